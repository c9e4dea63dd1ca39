/*
 * LMDB baseline for `strata bench storage`: the same three B-tree writes per
 * event that Strata's writer makes (log append, stream index, event-id index)
 * plus LMDB's synchronous commit, in plain C with no Swift, no queue and no
 * validation. It shows what this machine's disk and LMDB allow, so the Swift
 * figures can be judged against it.
 *
 *   cc -O2 scripts/bench/lmdb_baseline.c -o /tmp/lmdb_baseline -llmdb
 *   /tmp/lmdb_baseline DIR EVENTS_PER_COMMIT STREAMS [TOTAL_EVENTS]
 *
 * e.g. `62 1024` mimics 64 single-event callers on 1024 streams, and
 * `1600 16` mimics 16 callers appending 100-event batches.
 */
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

#define CHECK(call) do { int rc_ = (call); if (rc_) { fprintf(stderr, "%s: %s\n", #call, mdb_strerror(rc_)); return 1; } } while (0)

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: %s DIR EVENTS_PER_COMMIT STREAMS [TOTAL_EVENTS]\n", argv[0]); return 2; }
    const char *dir = argv[1];
    long per = atol(argv[2]), streams = atol(argv[3]), total = argc > 4 ? atol(argv[4]) : 1000000;
    if (per <= 0 || streams <= 0 || total <= 0) return 2;
    MDB_env *env; MDB_txn *txn; MDB_dbi log, idx, ids;
    CHECK(mdb_env_create(&env));
    CHECK(mdb_env_set_mapsize(env, 16UL << 30));
    CHECK(mdb_env_set_maxdbs(env, 8));
    CHECK(mdb_env_open(env, dir, MDB_NOTLS, 0644));
    CHECK(mdb_txn_begin(env, NULL, 0, &txn));
    CHECK(mdb_dbi_open(txn, "log", MDB_CREATE | MDB_INTEGERKEY, &log));
    CHECK(mdb_dbi_open(txn, "idx", MDB_CREATE, &idx));
    CHECK(mdb_dbi_open(txn, "ids", MDB_CREATE, &ids));
    CHECK(mdb_txn_commit(txn));
    unsigned long *revisions = calloc(streams, sizeof *revisions);
    char value[214];
    memset(value, 'x', sizeof value);
    unsigned long position = 0, counter = 0;
    long commits = total / per;
    double start = now(), building = 0;
    srand(42);
    for (long c = 0; c < commits; c++) {
        double b = now();
        CHECK(mdb_txn_begin(env, NULL, 0, &txn));
        for (long i = 0; i < per; i++) {
            position++;
            MDB_val k = {8, &position}, v = {sizeof value, value};
            CHECK(mdb_put(txn, log, &k, &v, MDB_APPEND));
            unsigned long s = streams == 1 ? 0 : (unsigned long)rand() % streams;
            unsigned long ik[2] = {__builtin_bswap64(s), __builtin_bswap64(revisions[s]++)};
            MDB_val k2 = {16, ik}, v2 = {8, &position};
            CHECK(mdb_put(txn, idx, &k2, &v2, 0));
            /* time-ordered ids: milliseconds first, then a counter */
            unsigned long id[2] = {__builtin_bswap64((unsigned long)(now() * 1000) << 16), __builtin_bswap64(++counter)};
            MDB_val k3 = {16, id};
            CHECK(mdb_put(txn, ids, &k3, &v2, MDB_NOOVERWRITE));
        }
        building += now() - b;
        CHECK(mdb_txn_commit(txn));
    }
    double elapsed = now() - start;
    printf("%ld events per commit over %ld streams: %.0f commits/s, %.0f events/s; building %.3f ms, committing %.3f ms per commit\n",
           per, streams, commits / elapsed, commits * per / elapsed, 1000 * building / commits, 1000 * (elapsed - building) / commits);
    mdb_env_close(env);
    return 0;
}
