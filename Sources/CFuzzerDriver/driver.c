// Only a header: LLVMFuzzerRunDriver comes from libFuzzer when strata-fuzz is
// built with -sanitize=fuzzer (scripts/fuzz.sh).
#include "CFuzzerDriver.h"
