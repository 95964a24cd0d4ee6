/*
 * Ranges and lengths the limits forbid are refused at once, before
 * anything is allocated or sent, on any kind of target; every handle sees
 * the size another one set. Run by tests/bounds.sh under a memory limit,
 * so that a regression that allocates for a huge length fails instead of
 * taking the machine:
 *   test_bounds TARGET...   (objects of 1 MiB)
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "testutil.h"

#define CHECK_EQ(a, b) CHECK((long long)(a) == (long long)(b))
#define MIB (1024LL * 1024)
#define GIB (1024 * MIB)
#define SIZE (1 * MIB)
/* A refusal takes no longer than this (the reported bug took 5-8 s). */
#define FAST_MS 200.0

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Runs `call`, checks its result and that it came at once. */
#define CHECK_FAST(call, expect)                                              \
    do {                                                                      \
        double t0_ = now_ms();                                                \
        long long r_ = (long long)(call);                                     \
        double ms_ = now_ms() - t0_;                                          \
        if (r_ != (long long)(expect) || ms_ > FAST_MS) {                     \
            fprintf(stderr, "%s:%d: %s = %lld in %.1f ms (want %lld)\n  %s\n", \
                    __FILE__, __LINE__, #call, r_, ms_, (long long)(expect),  \
                    rawstor_last_error());                                    \
            exit(1);                                                          \
        }                                                                     \
    } while (0)

/* One queue entry on `obj`; returns its completion's result. */
static int64_t queued(rawstor *inst, rawstor_object *obj, uint8_t op, uint64_t offset,
                      uint64_t length, void *addr)
{
    rawstor_queue *q = NULL;
    CHECK_EQ(rawstor_queue_new(inst, 4, &q), 0);
    rawstor_sqe sqe = {.opcode = op, .object = obj, .offset = offset, .length = length,
                       .addr = addr, .user_data = 7};
    CHECK_EQ(rawstor_queue_submit(q, &sqe, 1), 1);
    rawstor_cqe cqe;
    CHECK_EQ(rawstor_queue_reap(q, &cqe, 1, 1, 10000), 1);
    CHECK_EQ(cqe.user_data, 7);
    /* A failure tells why, until the next reap; a success does not. */
    const char *why = rawstor_queue_error(q, 7);
    CHECK(cqe.result < 0 ? why && (strstr(why, "bytes") || strstr(why, "NULL")) : !why);
    CHECK(rawstor_queue_error(q, 8) == NULL && rawstor_queue_error(NULL, 7) == NULL);
    rawstor_queue_free(q);
    return cqe.result;
}

static void test_huge_lengths(rawstor *inst, rawstor_object *obj)
{
    static uint8_t buf[4096];
    /* The length the C API is given, not what it may touch. */
    CHECK_FAST(rawstor_object_pread(obj, buf, SIZE_MAX - 4000, 4096), -EINVAL);
    CHECK_FAST(rawstor_object_pwrite(obj, buf, SIZE_MAX - 4000, 4096), -EINVAL);
    CHECK_FAST(rawstor_object_pread(obj, buf, 256 * GIB, 4096), -EINVAL);
    CHECK_FAST(rawstor_object_pread(obj, buf, RAWSTOR_IO_MAX + 4096, 0), -EINVAL);
    /* Within the limits, past the end: ENXIO (the length is not touched). */
    CHECK_FAST(rawstor_object_pread(obj, buf, RAWSTOR_IO_MAX, 0), -ENXIO);
    CHECK_FAST(rawstor_object_pwrite(obj, buf, RAWSTOR_IO_MAX, 0), -ENXIO);
    CHECK_FAST(rawstor_object_pread(obj, buf, 4096, 256 * GIB), -ENXIO);
    CHECK_FAST(rawstor_object_pwrite(obj, buf, 4096, SIZE), -ENXIO);
    CHECK_FAST(rawstor_object_pread(obj, buf, 4096, UINT64_MAX - 100), -ENXIO);
    /* The same through a queue. */
    CHECK_FAST(queued(inst, obj, RAWSTOR_OP_READ, 4096, SIZE_MAX - 4000, buf), -EINVAL);
    CHECK_FAST(queued(inst, obj, RAWSTOR_OP_WRITE, 4096, SIZE_MAX - 4000, buf), -EINVAL);
    CHECK_FAST(queued(inst, obj, RAWSTOR_OP_READ, 0, RAWSTOR_IO_MAX, buf), -ENXIO);
    CHECK_FAST(queued(inst, obj, RAWSTOR_OP_WRITE, SIZE, 1 * GIB, buf), -ENXIO);
    CHECK_FAST(queued(inst, obj, RAWSTOR_OP_WRITE, 0, 1 * GIB + 1, buf), -EINVAL);
    CHECK_FAST(queued(inst, obj, RAWSTOR_OP_WRITE, SIZE - 4096, 8192, buf), -ENXIO);
    CHECK_FAST(queued(inst, obj, RAWSTOR_OP_DISCARD, SIZE, 256 * GIB, NULL), -ENXIO);
    CHECK_FAST(queued(inst, obj, RAWSTOR_OP_WRITE_ZEROES, 4096, UINT64_MAX, NULL), -ENXIO);
    struct iovec iov[2] = {{buf, 4096}, {buf, SIZE_MAX - 8192}};
    rawstor_queue *q = NULL;
    CHECK_EQ(rawstor_queue_new(inst, 4, &q), 0);
    rawstor_sqe sqe = {.opcode = RAWSTOR_OP_READV, .object = obj, .offset = 0,
                       .iovcnt = 2, .addr = iov, .user_data = 9};
    CHECK_EQ(rawstor_queue_submit(q, &sqe, 1), 1);
    rawstor_cqe cqe;
    CHECK_EQ(rawstor_queue_reap(q, &cqe, 1, 1, 1000), 1);
    CHECK_EQ(cqe.result, -EINVAL);
    rawstor_queue_free(q);
    /* Nothing was stalled: the object still reads and writes at once. */
    memset(buf, 0x5a, sizeof(buf));
    CHECK_FAST(rawstor_object_pwrite(obj, buf, 4096, SIZE - 4096), 4096);
    memset(buf, 0, sizeof(buf));
    CHECK_FAST(rawstor_object_pread(obj, buf, 4096, SIZE - 4096), 4096);
    CHECK(buf[0] == 0x5a && buf[4095] == 0x5a);
}

/* A resize through one handle is what another handle (of another
 * instance, as another process would be) sees in its stat and its range
 * checks. `obj` writes (it holds the lease of an mdt:// object). */
static void test_one_size(rawstor_object *obj, const char *target)
{
    rawstor *other = NULL;
    rawstor_object *peer = NULL;
    rawstor_object_info info;
    static uint8_t buf[4096];
    CHECK_EQ(rawstor_new(NULL, &other), 0);
    CHECK_EQ(rawstor_object_open(other, target, &peer), 0);
    CHECK_EQ(rawstor_object_resize(obj, 2 * SIZE, 0), 0);
    CHECK_EQ(rawstor_object_stat(peer, &info), 0);
    CHECK_EQ(info.size, 2 * SIZE);
    /* Grown again: the peer reads past the size it saw last. */
    CHECK_EQ(rawstor_object_resize(obj, 3 * SIZE, 0), 0);
    memset(buf, 0x77, sizeof(buf));
    CHECK_EQ(rawstor_object_pwrite(obj, buf, 4096, 3 * SIZE - 4096), 4096);
    memset(buf, 0, sizeof(buf));
    CHECK_EQ(queued(other, peer, RAWSTOR_OP_READ, 3 * SIZE - 4096, 4096, buf), 4096);
    CHECK(buf[0] == 0x77 && buf[4095] == 0x77);
    CHECK_EQ(rawstor_object_pread(obj, buf, 4096, 3 * SIZE), -ENXIO);
    /* Resizing to the size it has is harmless (a caller's retry after a
     * resize that timed out). */
    CHECK_EQ(rawstor_object_resize(obj, 3 * SIZE, 0), 0);
    CHECK_EQ(rawstor_object_resize(obj, SIZE, RAWSTOR_RESIZE_SHRINK), 0);
    CHECK_EQ(rawstor_object_stat(peer, &info), 0);
    CHECK_EQ(info.size, SIZE);
    CHECK_EQ(rawstor_object_pread(peer, buf, 4096, SIZE), -ENXIO);
    CHECK_EQ(rawstor_object_close(peer), 0);
    rawstor_free(other);
}

int main(int argc, char **argv)
{
    alarm(300);
    CHECK(argc > 1);
    rawstor *inst = NULL;
    CHECK_EQ(rawstor_new(NULL, &inst), 0);
    for (int i = 1; i < argc; i++) {
        rawstor_object *obj = NULL;
        CHECK_EQ(rawstor_object_open(inst, argv[i], &obj), 0);
        test_huge_lengths(inst, obj);
        test_one_size(obj, argv[i]);
        CHECK_EQ(rawstor_object_close(obj), 0);
        printf("ok   - %s: huge lengths refused at once, one size for every handle\n", argv[i]);
    }
    rawstor_free(inst);
    return 0;
}
