// libFuzzer's driver, for strata-fuzz built with -sanitize=fuzzer: SwiftPM
// names an executable's entry point <module>_main, so strata-fuzz defines
// that entry and hands control to libFuzzer through this function (from
// libclang_rt.fuzzer). Not called in ordinary builds.
#ifndef STRATA_CFUZZERDRIVER_H
#define STRATA_CFUZZERDRIVER_H
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
