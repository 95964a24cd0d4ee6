/* SPDX-License-Identifier: Apache-2.0 */
/*
 * C API test: exercises include/rawstor.h as a C user would.
 *
 *   cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pedantic \
 *      -I include tests/c/test_api.c -L target/release -lrawstor -lpthread \
 *      -o test_api
 *   LD_LIBRARY_PATH=target/release ./test_api
 */

#include <errno.h>
#include <ftw.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rawstor.h"
#include "testutil.h"

/* CHECK(a == b), printing both values when they differ. */
#define CHECK_EQ(a, b)                                                       \
    do {                                                                     \
        long long check_a_ = (long long)(a);                                 \
        long long check_b_ = (long long)(b);                                 \
        if (check_a_ != check_b_) {                                          \
            fprintf(stderr,                                                  \
                    "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n"         \
                    "  last error: %s\n",                                    \
                    __FILE__, __LINE__, #a, #b, check_a_, check_b_,          \
                    rawstor_last_error());                                   \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

#define MIB (1024ull * 1024ull)
#define OBJ_SIZE (16 * MIB)
#define CHUNK (1 * MIB)
#define BLK 4096

static char dir1[64];
static char dir2[64];
static char dir3[64];


static void cleanup(void)
{
    rm_rf(dir1);
    rm_rf(dir2);
    rm_rf(dir3);
}

static void fill(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(seed * 131u + i * 7u + (i >> 12) + 1u);
}

static int all_zero(const uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (buf[i] != 0)
            return 0;
    return 1;
}

static int fd_readable(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int rc = poll(&pfd, 1, 0);
    CHECK(rc >= 0);
    return rc == 1 && (pfd.revents & POLLIN);
}

static rawstor_sqe make_sqe(uint8_t opcode, const rawstor_object *obj, uint64_t offset,
                            uint64_t length, void *addr, uint64_t user_data)
{
    rawstor_sqe sqe;
    memset(&sqe, 0, sizeof(sqe));
    sqe.opcode = opcode;
    sqe.object = obj;
    sqe.offset = offset;
    sqe.length = length;
    sqe.addr = addr;
    sqe.user_data = user_data;
    return sqe;
}

/* Submits one entry and reaps its completion (waiting up to 5 s). */
static rawstor_cqe run_one(rawstor_queue *q, const rawstor_sqe *sqe)
{
    rawstor_cqe cqe = {0, 0};
    CHECK_EQ(rawstor_queue_submit(q, sqe, 1), 1);
    CHECK_EQ(rawstor_queue_reap(q, &cqe, 1, 1, 5000), 1);
    CHECK_EQ(cqe.user_data, sqe->user_data);
    return cqe;
}

static void make_location(char *loc, size_t len, const char *dir)
{
    int n = snprintf(loc, len, "file://%s", dir);
    CHECK(n > 0 && (size_t)n < len);
}

static size_t count_objects(const rawstor *inst, const char *loc)
{
    rawstor_object_info entries[16];
    size_t count = 99;
    CHECK_EQ(rawstor_object_list(inst, loc, NULL, entries, 16, &count), 0);
    CHECK(count < 16);
    return count;
}

/* ------------------------------------------------------------------ */

static void test_basics(void)
{
    CHECK_EQ(sizeof(rawstor_sqe), rawstor_struct_size(0));
    CHECK_EQ(sizeof(rawstor_cqe), rawstor_struct_size(1));
    CHECK_EQ(sizeof(rawstor_options), rawstor_struct_size(2));
    CHECK_EQ(sizeof(rawstor_object_info), rawstor_struct_size(3));
    CHECK_EQ(sizeof(rawstor_create_spec), rawstor_struct_size(4));
    CHECK_EQ(rawstor_struct_size(5), 0);
    CHECK_EQ(rawstor_struct_size(-1), 0);
    CHECK_EQ(sizeof(rawstor_sqe), RAWSTOR_SQE_SIZE);
    CHECK_EQ(sizeof(rawstor_cqe), RAWSTOR_CQE_SIZE);

    const char *version = rawstor_version();
    CHECK(version != NULL);
    CHECK(version[0] != '\0');
    CHECK(strchr(version, '.') != NULL);

    const char *text = rawstor_strerror(-ENOENT);
    CHECK(text != NULL);
    CHECK(strcmp(text, "No such file or directory") == 0);
    CHECK(strcmp(rawstor_strerror(ENOENT), "No such file or directory") == 0);
    CHECK(rawstor_strerror(0) != NULL);
    CHECK(rawstor_strerror(100000) != NULL);
    CHECK(rawstor_strerror(-2147483647 - 1) != NULL);
    CHECK(rawstor_last_error() != NULL);
}

static void test_options(void)
{
    rawstor_options opts;

    unsetenv("RAWSTOR_OPTS_QUEUE_DEPTH");
    unsetenv("RAWSTOR_OPTS_TIMEOUT_MS");
    unsetenv("RAWSTOR_OPTS_IO_ATTEMPTS");
    unsetenv("RAWSTOR_OPTS_LIST_LIMIT");
    unsetenv("RAWSTOR_OPTS_STRAGGLER_MS");

    memset(&opts, 0xa5, sizeof(opts));
    CHECK_EQ(rawstor_options_init(&opts), 0);
    CHECK(opts.queue_depth > 0 && opts.queue_depth <= RAWSTOR_QUEUE_DEPTH_MAX);
    CHECK(opts.timeout_ms > 0 && opts.timeout_ms != 0xa5a5a5a5u);
    CHECK(opts.retries > 0 && opts.retries != 0xa5a5a5a5u);
    CHECK(opts.list_limit > 0 && opts.list_limit != 0xa5a5a5a5u);
    CHECK(opts.straggler_ms > 0 && opts.straggler_ms != 0xa5a5a5a5u);

    /* Environment overrides. */
    setenv("RAWSTOR_OPTS_QUEUE_DEPTH", "64", 1);
    CHECK_EQ(rawstor_options_init(&opts), 0);
    CHECK_EQ(opts.queue_depth, 64);
    setenv("RAWSTOR_OPTS_QUEUE_DEPTH", "lots", 1);
    CHECK_EQ(rawstor_options_init(&opts), -EINVAL);
    CHECK(strstr(rawstor_last_error(), "RAWSTOR_OPTS_QUEUE_DEPTH") != NULL);
    CHECK_EQ(opts.queue_depth, 64); /* unchanged on failure */
    unsetenv("RAWSTOR_OPTS_QUEUE_DEPTH");

    CHECK_EQ(rawstor_options_init(NULL), -EINVAL);

    /* Instances: with options, with NULL options, with bad options. */
    rawstor *inst = NULL;
    CHECK_EQ(rawstor_options_init(&opts), 0);
    CHECK_EQ(rawstor_new(&opts, &inst), 0);
    CHECK(inst != NULL);
    rawstor_free(inst);

    inst = NULL;
    CHECK_EQ(rawstor_new(NULL, &inst), 0);
    CHECK(inst != NULL);
    rawstor_free(inst);

    rawstor_options bad = {.queue_depth = RAWSTOR_QUEUE_DEPTH_MAX + 1};
    inst = NULL;
    CHECK_EQ(rawstor_new(&bad, &inst), -EINVAL);
    CHECK(inst == NULL);
    CHECK_EQ(rawstor_new(NULL, NULL), -EINVAL);

    /* Zero fields take their defaults. */
    rawstor_options zero = {0, 0, 0, 0, 0};
    CHECK_EQ(rawstor_new(&zero, &inst), 0);
    rawstor_free(inst);
}

/* Creates the test object in dir1; returns its target in `target`. */
static void test_create(rawstor *inst, char *target, size_t target_size)
{
    char loc[128];
    char small[16];
    make_location(loc, sizeof(loc), dir1);

    rawstor_create_spec spec = {.size = OBJ_SIZE, .chunk_size = CHUNK, .uuid = NULL};
    int rc = rawstor_object_create(inst, loc, &spec, target, target_size);
    CHECK(rc > 0);
    CHECK_EQ(rc, strlen(target));
    CHECK(strncmp(target, loc, strlen(loc)) == 0);
    CHECK(target[strlen(loc)] == '/');
    CHECK_EQ(strlen(target), strlen(loc) + 1 + 36);
    CHECK_EQ(count_objects(inst, loc), 1);

    /* One location keeps one copy; a missing object has no layout. */
    char layout[RAWSTOR_LAYOUT_MAX];
    CHECK_EQ(rawstor_target_layout(inst, target, layout, sizeof(layout)), strlen("replicas:1"));
    CHECK(strcmp(layout, "replicas:1") == 0);
    CHECK_EQ(rawstor_target_layout(inst, target, layout, 4), -ERANGE);
    char missing[RAWSTOR_TARGET_MAX];
    snprintf(missing, sizeof(missing), "%s/0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b", loc);
    CHECK_EQ(rawstor_target_layout(inst, missing, layout, sizeof(layout)), -ENOENT);

    /* Too small a buffer: -ERANGE and nothing is created. */
    memset(small, 'x', sizeof(small));
    CHECK_EQ(rawstor_object_create(inst, loc, &spec, small, sizeof(small)), -ERANGE);
    CHECK_EQ(count_objects(inst, loc), 1);

    /* Bad location. */
    char buf[RAWSTOR_TARGET_MAX];
    CHECK_EQ(rawstor_object_create(inst, "file://relative", &spec, buf, sizeof(buf)), -EINVAL);
    CHECK(strstr(rawstor_last_error(), "absolute") != NULL);
    CHECK_EQ(rawstor_object_create(inst, "nbd://host:1", &spec, buf, sizeof(buf)), -EINVAL);

    /* Bad sizes and chunk sizes. */
    rawstor_create_spec bad = spec;
    bad.size = 1000;
    CHECK_EQ(rawstor_object_create(inst, loc, &bad, buf, sizeof(buf)), -EINVAL);
    bad.size = 0;
    CHECK_EQ(rawstor_object_create(inst, loc, &bad, buf, sizeof(buf)), -EINVAL);
    bad = spec;
    bad.chunk_size = 3 * MIB;
    CHECK_EQ(rawstor_object_create(inst, loc, &bad, buf, sizeof(buf)), -EINVAL);
    bad.chunk_size = 4096; /* below the minimum */
    CHECK_EQ(rawstor_object_create(inst, loc, &bad, buf, sizeof(buf)), -EINVAL);
    bad = spec;
    bad.uuid = "not-a-uuid";
    CHECK_EQ(rawstor_object_create(inst, loc, &bad, buf, sizeof(buf)), -EINVAL);

    /* A layout only where a rawstor-mdt places the object, and well formed. */
    CHECK_EQ(rawstor_object_create_layout(inst, loc, &spec, "ec:4+2", buf, sizeof(buf)), -EINVAL);
    CHECK(strstr(rawstor_last_error(), "needs an mdt:// location") != NULL);
    CHECK_EQ(rawstor_object_create_layout(inst, loc, &spec, "raid5", buf, sizeof(buf)), -EINVAL);
    CHECK_EQ(count_objects(inst, loc), 1);

    /* NULL arguments. */
    CHECK_EQ(rawstor_object_create(NULL, loc, &spec, buf, sizeof(buf)), -EINVAL);
    CHECK_EQ(rawstor_object_create(inst, NULL, &spec, buf, sizeof(buf)), -EINVAL);
    CHECK_EQ(rawstor_object_create(inst, loc, NULL, buf, sizeof(buf)), -EINVAL);
    CHECK_EQ(rawstor_object_create(inst, loc, &spec, NULL, sizeof(buf)), -EINVAL);

    /* A given UUID; the buffer boundary is exact (length + NUL). */
    const char *uuid = "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b";
    rawstor_create_spec given = {.size = 1 * MIB, .chunk_size = 0, .uuid = uuid};
    size_t want = strlen(loc) + 1 + strlen(uuid);
    CHECK_EQ(rawstor_object_create(inst, loc, &given, buf, want), -ERANGE);
    CHECK_EQ(count_objects(inst, loc), 1);
    memset(buf, 'x', sizeof(buf));
    CHECK_EQ(rawstor_object_create(inst, loc, &given, buf, want + 1), want);
    CHECK_EQ(strlen(buf), want);
    CHECK(strcmp(buf + strlen(loc) + 1, uuid) == 0);
    CHECK_EQ(count_objects(inst, loc), 2);

    /* The same UUID again. */
    char again[RAWSTOR_TARGET_MAX];
    CHECK_EQ(rawstor_object_create(inst, loc, &given, again, sizeof(again)), -EEXIST);
    CHECK_EQ(count_objects(inst, loc), 2);

    /* The given-UUID object has the default chunk size; then remove it. */
    rawstor_object *obj = NULL;
    rawstor_object_info info;
    CHECK_EQ(rawstor_object_open(inst, buf, &obj), 0);
    CHECK_EQ(rawstor_object_stat(obj, &info), 0);
    CHECK(strcmp(info.uuid, uuid) == 0);
    CHECK_EQ(info.size, 1 * MIB);
    CHECK_EQ(info.chunk_size, RAWSTOR_CHUNK_SIZE_DEFAULT);
    CHECK_EQ(rawstor_object_close(obj), 0);
    /* Data written before the remove... */
    static uint8_t blk[BLK];
    CHECK_EQ(rawstor_object_open(inst, buf, &obj), 0);
    fill(blk, BLK, 9);
    CHECK_EQ(rawstor_object_pwrite(obj, blk, BLK, 0), BLK);
    CHECK_EQ(rawstor_object_close(obj), 0);
    CHECK_EQ(rawstor_object_remove(inst, buf), 0);
    CHECK_EQ(count_objects(inst, loc), 1);
    /* ... does not come back with a new object of the same UUID. */
    CHECK_EQ(rawstor_object_create(inst, loc, &given, again, sizeof(again)), want);
    CHECK_EQ(rawstor_object_open(inst, again, &obj), 0);
    memset(blk, 0xff, BLK);
    CHECK_EQ(rawstor_object_pread(obj, blk, BLK, 0), BLK);
    CHECK(all_zero(blk, BLK));
    CHECK_EQ(rawstor_object_close(obj), 0);
    CHECK_EQ(rawstor_object_remove(inst, again), 0);
    CHECK_EQ(count_objects(inst, loc), 1);

    /* The largest size (256 TiB) is accepted, one block more is not. */
    rawstor_create_spec huge = {.size = 1ull << 48, .chunk_size = 0, .uuid = NULL};
    CHECK(rawstor_object_create(inst, loc, &huge, again, sizeof(again)) > 0);
    CHECK_EQ(rawstor_object_open(inst, again, &obj), 0);
    CHECK_EQ(rawstor_object_stat(obj, &info), 0);
    CHECK_EQ(info.size, 1ull << 48);
    CHECK_EQ(rawstor_object_close(obj), 0);
    CHECK_EQ(rawstor_object_remove(inst, again), 0);
    huge.size = (1ull << 48) + BLK;
    CHECK_EQ(rawstor_object_create(inst, loc, &huge, again, sizeof(again)), -EINVAL);
    CHECK_EQ(count_objects(inst, loc), 1);
}

static void test_target_split(const char *target)
{
    char location[RAWSTOR_TARGET_MAX];
    char uuid[RAWSTOR_UUID_BUF];
    char tiny[8];

    CHECK_EQ(rawstor_target_split(target, location, sizeof(location), uuid), 0);
    CHECK_EQ(strlen(uuid), 36);
    CHECK_EQ(strlen(location) + 1 + 36, strlen(target));
    CHECK(strncmp(target, location, strlen(location)) == 0);
    CHECK(strcmp(target + strlen(location) + 1, uuid) == 0);

    /* Mirrors: the UUID comes off every element. */
    CHECK_EQ(rawstor_target_split("ost://a:1/0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b,"
                                  "ost://b:1/0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b",
                                  location, sizeof(location), uuid),
             0);
    CHECK(strcmp(location, "ost://a:1,ost://b:1") == 0);
    CHECK(strcmp(uuid, "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b") == 0);

    /* A location is not a target; a short buffer is -ERANGE, untouched. */
    CHECK_EQ(rawstor_target_split("ost://a:1", location, sizeof(location), uuid), -EINVAL);
    memset(tiny, 'x', sizeof(tiny));
    CHECK_EQ(rawstor_target_split(target, tiny, sizeof(tiny), uuid), -ERANGE);
    CHECK(tiny[0] == 'x');
    CHECK_EQ(rawstor_target_split(NULL, location, sizeof(location), uuid), -EINVAL);
}

static void test_open_stat(rawstor *inst, const char *target, rawstor_object **out)
{
    rawstor_object *obj = NULL;
    rawstor_object_info info;
    char other[RAWSTOR_TARGET_MAX];

    CHECK_EQ(rawstor_object_open(inst, "file:///tmp/not-a-target", &obj), -EINVAL);
    CHECK(obj == NULL);
    CHECK_EQ(rawstor_object_open(inst, "file://rel/0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b", &obj),
             -EINVAL);
    snprintf(other, sizeof(other), "file://%s/0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2c", dir1);
    CHECK_EQ(rawstor_object_open(inst, other, &obj), -ENOENT);
    CHECK(obj == NULL);

    CHECK_EQ(rawstor_object_open(inst, target, &obj), 0);
    CHECK(obj != NULL);

    memset(&info, 0xa5, sizeof(info));
    CHECK_EQ(rawstor_object_stat(obj, &info), 0);
    CHECK_EQ(info.size, OBJ_SIZE);
    CHECK_EQ(info.chunk_size, CHUNK);
    CHECK_EQ(info.block_size, 4096);
    CHECK_EQ(strlen(info.uuid), 36);
    CHECK(strcmp(info.uuid, target + strlen(target) - 36) == 0);
    CHECK_EQ(rawstor_object_stat(NULL, &info), -EINVAL);
    CHECK_EQ(rawstor_object_stat(obj, NULL), -EINVAL);
    *out = obj;
}

static void test_sync_io(rawstor_object *obj)
{
    enum { N = 64 * 1024 };
    uint8_t *a = malloc(N), *b = malloc(N), *c = malloc(N);
    CHECK(a && b && c);

    /* Never-written ranges read as zeros. */
    memset(b, 0xff, N);
    CHECK_EQ(rawstor_object_pread(obj, b, N, 8 * MIB), N);
    CHECK(all_zero(b, N));

    /* Aligned round trip. */
    fill(a, N, 1);
    CHECK_EQ(rawstor_object_pwrite(obj, a, N, 0), N);
    memset(b, 0, N);
    CHECK_EQ(rawstor_object_pread(obj, b, N, 0), N);
    CHECK(memcmp(a, b, N) == 0);

    /* Unaligned write inside it: 300 bytes at 4000 (crosses a block). */
    fill(c, 300, 2);
    CHECK_EQ(rawstor_object_pwrite(obj, c, 300, 4000), 300);
    memcpy(a + 4000, c, 300);
    CHECK_EQ(rawstor_object_pread(obj, b, N, 0), N);
    CHECK(memcmp(a, b, N) == 0);
    /* An unaligned read of the same bytes. */
    memset(b, 0, 300);
    CHECK_EQ(rawstor_object_pread(obj, b, 300, 4000), 300);
    CHECK(memcmp(b, c, 300) == 0);
    CHECK_EQ(rawstor_object_pread(obj, b, 1, 3999), 1);
    CHECK_EQ(b[0], a[3999]);
    CHECK_EQ(rawstor_object_pread(obj, b, 1, 4300), 1);
    CHECK_EQ(b[0], a[4300]);

    /* Crossing a chunk boundary, unaligned at both ends. */
    uint64_t off = CHUNK - 5000;
    fill(a, 12000, 3);
    CHECK_EQ(rawstor_object_pwrite(obj, a, 12000, off), 12000);
    memset(b, 0, 12000);
    CHECK_EQ(rawstor_object_pread(obj, b, 12000, off), 12000);
    CHECK(memcmp(a, b, 12000) == 0);
    /* Bytes around it were zero and stay zero. */
    CHECK_EQ(rawstor_object_pread(obj, b, 100, off - 100), 100);
    CHECK(all_zero(b, 100));
    CHECK_EQ(rawstor_object_pread(obj, b, 100, off + 12000), 100);
    CHECK(all_zero(b, 100));

    /* Crossing a chunk boundary, aligned. */
    off = 2 * CHUNK - 8192;
    fill(a, N, 4);
    CHECK_EQ(rawstor_object_pwrite(obj, a, N, off), N);
    CHECK_EQ(rawstor_object_pread(obj, b, N, off), N);
    CHECK(memcmp(a, b, N) == 0);

    /* Zero length. */
    CHECK_EQ(rawstor_object_pread(obj, b, 0, 0), 0);
    CHECK_EQ(rawstor_object_pwrite(obj, a, 0, 0), 0);

    /* Last block, then past the end. */
    fill(a, BLK, 5);
    CHECK_EQ(rawstor_object_pwrite(obj, a, BLK, OBJ_SIZE - BLK), BLK);
    CHECK_EQ(rawstor_object_pread(obj, b, 8192, OBJ_SIZE - BLK), -ENXIO);
    CHECK(strstr(rawstor_last_error(), "past the end") != NULL);
    CHECK_EQ(rawstor_object_pread(obj, b, BLK, OBJ_SIZE), -ENXIO);
    CHECK_EQ(rawstor_object_pread(obj, b, 100, UINT64_MAX - 10), -ENXIO);
    /* The object still works. */
    memset(b, 0, BLK);
    CHECK_EQ(rawstor_object_pread(obj, b, BLK, OBJ_SIZE - BLK), BLK);
    CHECK(memcmp(a, b, BLK) == 0);

    fill(c, 8192, 6);
    CHECK_EQ(rawstor_object_pwrite(obj, c, 8192, OBJ_SIZE - BLK), -ENXIO);
    CHECK_EQ(rawstor_object_pwrite(obj, c, 100, UINT64_MAX - 10), -ENXIO);
    rawstor_object_info info;
    CHECK_EQ(rawstor_object_stat(obj, &info), 0);
    CHECK_EQ(info.size, OBJ_SIZE);
    /* Nothing of the failed write landed. */
    CHECK_EQ(rawstor_object_pread(obj, b, BLK, OBJ_SIZE - BLK), BLK);
    CHECK(memcmp(a, b, BLK) == 0);

    /* NULL arguments. */
    CHECK_EQ(rawstor_object_pread(NULL, b, BLK, 0), -EINVAL);
    CHECK_EQ(rawstor_object_pread(obj, NULL, BLK, 0), -EINVAL);
    CHECK_EQ(rawstor_object_pwrite(obj, NULL, BLK, 0), -EINVAL);

    CHECK_EQ(rawstor_object_flush(obj), 0);
    CHECK_EQ(rawstor_object_flush(NULL), -EINVAL);

    free(a);
    free(b);
    free(c);
}

static void test_block_status(rawstor_object *obj)
{
    uint64_t extent = 0;
    uint8_t block[4096];

    memset(block, 0x5a, sizeof(block));
    CHECK_EQ(rawstor_object_pwrite(obj, block, sizeof(block), 0), (int64_t)sizeof(block));
    CHECK_EQ(rawstor_object_block_status(obj, 0, OBJ_SIZE, &extent), 1);
    CHECK(extent >= sizeof(block) && extent <= OBJ_SIZE);
    CHECK_EQ(rawstor_object_block_status(obj, 0, 100, &extent), 1);
    CHECK_EQ(extent, 100);
    CHECK_EQ(rawstor_object_block_status(obj, OBJ_SIZE, 4096, &extent), -ENXIO);
    CHECK_EQ(rawstor_object_block_status(obj, 0, 4096, NULL), -EINVAL);
}

static void test_queue_basics(rawstor *inst, rawstor_object *obj)
{
    rawstor_queue *q = NULL;
    rawstor_cqe cqes[16];
    rawstor_sqe sqes[16];
    static uint8_t bufs[10][BLK];
    const uint64_t base = 4 * MIB;

    CHECK_EQ(rawstor_queue_new(inst, RAWSTOR_QUEUE_DEPTH_MAX + 1, &q), -EINVAL);
    CHECK(q == NULL);
    CHECK_EQ(rawstor_queue_new(NULL, 8, &q), -EINVAL);
    CHECK_EQ(rawstor_queue_new(inst, 8, NULL), -EINVAL);
    CHECK_EQ(rawstor_queue_new(inst, 0, &q), 0); /* the default depth */
    CHECK(q != NULL);
    rawstor_queue_free(q);
    q = NULL;
    CHECK_EQ(rawstor_queue_new(inst, RAWSTOR_QUEUE_DEPTH_MAX, &q), 0);
    rawstor_queue_free(q);
    q = NULL;

    /* Depth 0 takes the instance's queue_depth option. */
    rawstor_options opts = {.queue_depth = 4};
    rawstor *small = NULL;
    CHECK_EQ(rawstor_new(&opts, &small), 0);
    CHECK_EQ(rawstor_queue_new(small, 0, &q), 0);
    for (unsigned i = 0; i < 5; i++)
        sqes[i] = make_sqe(RAWSTOR_OP_READ, obj, base + i * BLK, BLK, bufs[i], i);
    CHECK_EQ(rawstor_queue_submit(q, sqes, 5), 4);
    /* min above what is outstanding: returns what there is, at once. */
    CHECK_EQ(rawstor_queue_reap(q, cqes, 16, 8, -1), 4);
    rawstor_queue_free(q);
    q = NULL;
    rawstor_free(small);

    CHECK_EQ(rawstor_queue_new(inst, 8, &q), 0);
    CHECK(q != NULL);
    int efd = rawstor_queue_eventfd(q);
    CHECK(efd >= 0);
    CHECK_EQ(rawstor_queue_eventfd(q), efd); /* the same descriptor */
    CHECK_EQ(rawstor_queue_eventfd(NULL), -EINVAL);
    CHECK(!fd_readable(efd));

    /* Nothing outstanding: reap returns 0 at once even with min 1, no limit. */
    CHECK_EQ(rawstor_queue_reap(q, cqes, 16, 1, -1), 0);
    CHECK_EQ(rawstor_queue_reap(q, cqes, 0, 0, 0), 0);
    CHECK_EQ(rawstor_queue_submit(q, sqes, 0), 0);
    CHECK_EQ(rawstor_queue_submit(q, NULL, 1), -EINVAL);
    CHECK_EQ(rawstor_queue_submit(NULL, sqes, 1), -EINVAL);
    CHECK_EQ(rawstor_queue_reap(NULL, cqes, 1, 0, 0), -EINVAL);
    CHECK_EQ(rawstor_queue_reap(q, NULL, 1, 0, 0), -EINVAL);

    /* Fill the queue: 8 writes with user_data 0..7. */
    for (unsigned i = 0; i < 8; i++) {
        fill(bufs[i], BLK, 10 + i);
        sqes[i] = make_sqe(RAWSTOR_OP_WRITE, obj, base + i * BLK, BLK, bufs[i], i);
    }
    CHECK_EQ(rawstor_queue_submit(q, sqes, 8), 8);
    CHECK(fd_readable(efd));
    /* A 9th does not fit. */
    fill(bufs[8], BLK, 18);
    rawstor_sqe ninth = make_sqe(RAWSTOR_OP_WRITE, obj, base + 8 * BLK, BLK, bufs[8], 8);
    CHECK_EQ(rawstor_queue_submit(q, &ninth, 1), -EAGAIN);

    memset(cqes, 0xa5, sizeof(cqes));
    CHECK_EQ(rawstor_queue_reap(q, cqes, 16, 8, -1), 8);
    unsigned seen = 0;
    for (unsigned i = 0; i < 8; i++) {
        CHECK_EQ(cqes[i].result, BLK);
        CHECK(cqes[i].user_data < 8);
        seen |= 1u << cqes[i].user_data;
    }
    CHECK_EQ(seen, 0xffu);
    CHECK(!fd_readable(efd));

    /* Partial acceptance: 7 in flight, a batch of 3 takes 1. */
    CHECK_EQ(rawstor_queue_submit(q, sqes, 7), 7);
    rawstor_sqe batch[3];
    for (unsigned i = 0; i < 3; i++)
        batch[i] = make_sqe(RAWSTOR_OP_WRITE, obj, base + (7 + i) * BLK, BLK, bufs[7 + i], 7 + i);
    fill(bufs[9], BLK, 19);
    CHECK_EQ(rawstor_queue_submit(q, batch, 3), 1);
    CHECK_EQ(rawstor_queue_submit(q, batch + 1, 2), -EAGAIN);
    /* Reap in two steps; the eventfd stays readable while some wait. */
    CHECK_EQ(rawstor_queue_reap(q, cqes, 3, 3, 1000), 3);
    CHECK(fd_readable(efd));
    CHECK_EQ(rawstor_queue_reap(q, cqes + 3, 16, 5, 1000), 5);
    CHECK(!fd_readable(efd));
    seen = 0;
    for (unsigned i = 0; i < 8; i++) {
        CHECK_EQ(cqes[i].result, BLK);
        CHECK(cqes[i].user_data < 8);
        seen |= 1u << cqes[i].user_data;
    }
    CHECK_EQ(seen, 0xffu);
    CHECK_EQ(rawstor_queue_submit(q, batch + 1, 2), 2);
    CHECK_EQ(rawstor_queue_reap(q, cqes, 16, 2, 1000), 2);
    CHECK_EQ(cqes[0].result, BLK);
    CHECK_EQ(cqes[1].result, BLK);

    /* Read one back: the eventfd turns readable, then clear after reaping. */
    static uint8_t rbuf[BLK];
    for (unsigned i = 0; i < 10; i++) {
        memset(rbuf, 0, BLK);
        rawstor_sqe rd = make_sqe(RAWSTOR_OP_READ, obj, base + i * BLK, BLK, rbuf, 1000 + i);
        CHECK(!fd_readable(efd));
        CHECK_EQ(rawstor_queue_submit(q, &rd, 1), 1);
        CHECK(fd_readable(efd));
        CHECK_EQ(rawstor_queue_reap(q, cqes, 16, 1, 1000), 1);
        CHECK_EQ(cqes[0].user_data, 1000 + i);
        CHECK_EQ(cqes[0].result, BLK);
        CHECK(memcmp(rbuf, bufs[i], BLK) == 0);
        CHECK(!fd_readable(efd));
    }

    /* A queue read past the end completes with -ENXIO. */
    rawstor_sqe past = make_sqe(RAWSTOR_OP_READ, obj, OBJ_SIZE - BLK, 2 * BLK, bufs[0], 77);
    CHECK_EQ(run_one(q, &past).result, -ENXIO);
    rawstor_sqe pastw = make_sqe(RAWSTOR_OP_WRITE, obj, OBJ_SIZE, BLK, bufs[0], 78);
    CHECK_EQ(run_one(q, &pastw).result, -ENXIO);

    /* Malformed entries are accepted and complete with -EINVAL. */
    rawstor_sqe nullobj = make_sqe(RAWSTOR_OP_READ, NULL, 0, BLK, rbuf, 42);
    CHECK_EQ(run_one(q, &nullobj).result, -EINVAL);
    rawstor_sqe unknown = make_sqe(99, obj, 0, BLK, rbuf, 43);
    CHECK_EQ(run_one(q, &unknown).result, -EINVAL);
    rawstor_sqe nullbuf = make_sqe(RAWSTOR_OP_WRITE, obj, 0, BLK, NULL, 44);
    CHECK_EQ(run_one(q, &nullbuf).result, -EINVAL);
    rawstor_sqe zero_len = make_sqe(RAWSTOR_OP_READ, obj, 0, 0, NULL, 45);
    CHECK_EQ(run_one(q, &zero_len).result, 0);
    /* A batch mixing good and bad entries. */
    sqes[0] = make_sqe(RAWSTOR_OP_READ, NULL, 0, BLK, rbuf, 50);
    sqes[1] = make_sqe(RAWSTOR_OP_READ, obj, base, BLK, rbuf, 51);
    sqes[2] = make_sqe(99, obj, 0, 0, NULL, 52);
    CHECK_EQ(rawstor_queue_submit(q, sqes, 3), 3);
    CHECK_EQ(rawstor_queue_reap(q, cqes, 16, 3, 1000), 3);
    for (unsigned i = 0; i < 3; i++) {
        if (cqes[i].user_data == 51)
            CHECK_EQ(cqes[i].result, BLK);
        else
            CHECK(cqes[i].result == -EINVAL &&
                  (cqes[i].user_data == 50 || cqes[i].user_data == 52));
    }
    CHECK(!fd_readable(efd));

    /* Unreaped completions are dropped by free. */
    rawstor_sqe rd = make_sqe(RAWSTOR_OP_READ, obj, base, BLK, rbuf, 60);
    CHECK_EQ(rawstor_queue_submit(q, &rd, 1), 1);
    rawstor_queue_free(q);
}

static void test_vectors(rawstor *inst, rawstor_object *obj)
{
    enum { NIOV = 64 };
    rawstor_queue *q = NULL;
    struct iovec wiov[NIOV], riov[NIOV];
    uint8_t *wbuf[NIOV], *rbuf[NIOV];
    /* Crosses the chunk boundary at 3 MiB. */
    const uint64_t off = 3 * MIB - 32 * BLK;

    CHECK_EQ(rawstor_queue_new(inst, 8, &q), 0);
    for (unsigned i = 0; i < NIOV; i++) {
        wbuf[i] = malloc(BLK);
        rbuf[i] = malloc(BLK);
        CHECK(wbuf[i] && rbuf[i]);
        fill(wbuf[i], BLK, 100 + i);
        memset(rbuf[i], 0, BLK);
        wiov[i].iov_base = wbuf[i];
        wiov[i].iov_len = BLK;
        riov[i].iov_base = rbuf[i];
        riov[i].iov_len = BLK;
    }
    rawstor_sqe wv = make_sqe(RAWSTOR_OP_WRITEV, obj, off, 0, wiov, 1);
    wv.iovcnt = NIOV;
    CHECK_EQ(run_one(q, &wv).result, NIOV * BLK);
    rawstor_sqe rv = make_sqe(RAWSTOR_OP_READV, obj, off, 0, riov, 2);
    rv.iovcnt = NIOV;
    CHECK_EQ(run_one(q, &rv).result, NIOV * BLK);
    for (unsigned i = 0; i < NIOV; i++)
        CHECK(memcmp(wbuf[i], rbuf[i], BLK) == 0);
    /* The same data through pread, as one piece. */
    uint8_t *flat = malloc(NIOV * BLK);
    CHECK(flat);
    CHECK_EQ(rawstor_object_pread(obj, flat, NIOV * BLK, off), NIOV * BLK);
    for (unsigned i = 0; i < NIOV; i++)
        CHECK(memcmp(flat + i * BLK, wbuf[i], BLK) == 0);

    /* Unaligned iovec lengths: 64 x 100 bytes at an unaligned offset. */
    const uint64_t uoff = 5 * MIB - 3000;
    uint8_t expect[NIOV * 100];
    for (unsigned i = 0; i < NIOV; i++) {
        fill(wbuf[i], 100, 200 + i);
        memcpy(expect + i * 100, wbuf[i], 100);
        wiov[i].iov_len = 100;
    }
    wv = make_sqe(RAWSTOR_OP_WRITEV, obj, uoff, 0, wiov, 3);
    wv.iovcnt = NIOV;
    CHECK_EQ(run_one(q, &wv).result, NIOV * 100);
    memset(flat, 0, NIOV * 100);
    CHECK_EQ(rawstor_object_pread(obj, flat, NIOV * 100, uoff), NIOV * 100);
    CHECK(memcmp(flat, expect, NIOV * 100) == 0);
    /* ... and through readv with odd lengths (a mix, including 0). */
    size_t lens[4] = {1, 0, 4095, 2304};
    size_t at = 0;
    for (unsigned i = 0; i < 4; i++) {
        memset(rbuf[i], 0, BLK);
        riov[i].iov_len = lens[i];
        at += lens[i];
    }
    CHECK_EQ(at, NIOV * 100);
    rv = make_sqe(RAWSTOR_OP_READV, obj, uoff, 0, riov, 4);
    rv.iovcnt = 4;
    CHECK_EQ(run_one(q, &rv).result, NIOV * 100);
    at = 0;
    for (unsigned i = 0; i < 4; i++) {
        CHECK(memcmp(rbuf[i], expect + at, lens[i]) == 0);
        at += lens[i];
    }

    /* RAWSTOR_IOV_MAX iovecs of 16 bytes in one entry. */
    struct iovec *many = calloc(RAWSTOR_IOV_MAX, sizeof(*many));
    uint8_t *src = malloc(RAWSTOR_IOV_MAX * 16), *dst = calloc(RAWSTOR_IOV_MAX, 16);
    CHECK(many && src && dst);
    fill(src, RAWSTOR_IOV_MAX * 16, 250);
    for (unsigned i = 0; i < RAWSTOR_IOV_MAX; i++) {
        many[i].iov_base = src + i * 16;
        many[i].iov_len = 16;
    }
    wv = make_sqe(RAWSTOR_OP_WRITEV, obj, off, 0, many, 7);
    wv.iovcnt = RAWSTOR_IOV_MAX;
    CHECK_EQ(run_one(q, &wv).result, RAWSTOR_IOV_MAX * 16);
    for (unsigned i = 0; i < RAWSTOR_IOV_MAX; i++)
        many[RAWSTOR_IOV_MAX - 1 - i].iov_base = dst + (RAWSTOR_IOV_MAX - 1 - i) * 16;
    rv = make_sqe(RAWSTOR_OP_READV, obj, off, 0, many, 8);
    rv.iovcnt = RAWSTOR_IOV_MAX;
    CHECK_EQ(run_one(q, &rv).result, RAWSTOR_IOV_MAX * 16);
    CHECK(memcmp(src, dst, RAWSTOR_IOV_MAX * 16) == 0);
    free(many);
    free(src);
    free(dst);

    /* Bad iovec counts and arrays. */
    rawstor_sqe bad = make_sqe(RAWSTOR_OP_READV, obj, off, 0, riov, 5);
    bad.iovcnt = 0;
    CHECK_EQ(run_one(q, &bad).result, -EINVAL);
    bad.iovcnt = RAWSTOR_IOV_MAX + 1;
    CHECK_EQ(run_one(q, &bad).result, -EINVAL);
    bad.iovcnt = 1;
    bad.addr = NULL;
    CHECK_EQ(run_one(q, &bad).result, -EINVAL);
    /* A writev past the end: -ENXIO, nothing written. */
    for (unsigned i = 0; i < NIOV; i++)
        wiov[i].iov_len = BLK;
    wv = make_sqe(RAWSTOR_OP_WRITEV, obj, OBJ_SIZE - 2 * BLK, 0, wiov, 6);
    wv.iovcnt = 4;
    CHECK_EQ(run_one(q, &wv).result, -ENXIO);

    free(flat);
    for (unsigned i = 0; i < NIOV; i++) {
        free(wbuf[i]);
        free(rbuf[i]);
    }
    rawstor_queue_free(q);
}

static void test_async_ops(rawstor *inst, const char *target, rawstor_object *obj)
{
    rawstor_queue *q = NULL;
    rawstor_cqe cqes[4];
    static uint8_t buf[BLK], rbuf[BLK];
    const uint64_t off = 6 * MIB + 123 * BLK;

    CHECK_EQ(rawstor_queue_new(inst, 8, &q), 0);
    int efd = rawstor_queue_eventfd(q);
    CHECK(efd >= 0);

    rawstor_sqe flush = make_sqe(RAWSTOR_OP_FLUSH, obj, 0, 0, NULL, 100);
    CHECK_EQ(rawstor_queue_submit(q, &flush, 1), 1);
    CHECK_EQ(rawstor_queue_reap(q, cqes, 4, 1, 5000), 1);
    CHECK_EQ(cqes[0].user_data, 100);
    CHECK_EQ(cqes[0].result, 0);
    CHECK(!fd_readable(efd));

    fill(buf, BLK, 300);
    rawstor_sqe fua = make_sqe(RAWSTOR_OP_WRITE, obj, off, BLK, buf, 101);
    fua.flags = RAWSTOR_SQE_FUA;
    CHECK_EQ(rawstor_queue_submit(q, &fua, 1), 1);
    CHECK_EQ(rawstor_queue_reap(q, cqes, 4, 1, 5000), 1);
    CHECK_EQ(cqes[0].user_data, 101);
    CHECK_EQ(cqes[0].result, BLK);
    CHECK_EQ(rawstor_object_pread(obj, rbuf, BLK, off), BLK);
    CHECK(memcmp(buf, rbuf, BLK) == 0);

    /* Both at once; wait on the eventfd as an event loop would. */
    rawstor_sqe two[2] = {flush, fua};
    two[0].user_data = 102;
    two[1].user_data = 103;
    CHECK_EQ(rawstor_queue_submit(q, two, 2), 2);
    int got = 0;
    unsigned seen = 0;
    for (int tries = 0; got < 2 && tries < 100; tries++) {
        struct pollfd pfd = {.fd = efd, .events = POLLIN};
        int rc = poll(&pfd, 1, 5000);
        CHECK_EQ(rc, 1);
        int n = rawstor_queue_reap(q, cqes, 4, 0, 0);
        CHECK(n >= 0);
        for (int i = 0; i < n; i++) {
            if (cqes[i].user_data == 102)
                CHECK_EQ(cqes[i].result, 0);
            else if (cqes[i].user_data == 103)
                CHECK_EQ(cqes[i].result, BLK);
            else
                CHECK(!"unexpected user_data");
            seen |= 1u << (cqes[i].user_data - 102);
        }
        got += n;
    }
    CHECK_EQ(got, 2);
    CHECK_EQ(seen, 3);
    CHECK(!fd_readable(efd));

    /* A failing FUA write fails at once, without the barrier. */
    rawstor_sqe fua_bad = make_sqe(RAWSTOR_OP_WRITE, obj, OBJ_SIZE, BLK, buf, 104);
    fua_bad.flags = RAWSTOR_SQE_FUA;
    CHECK_EQ(run_one(q, &fua_bad).result, -ENXIO);

    /* Discard 1 MiB (a whole chunk) after filling it: reads zeros. */
    uint8_t *big = malloc(MIB);
    CHECK(big);
    fill(big, MIB, 400);
    CHECK_EQ(rawstor_object_pwrite(obj, big, MIB, 7 * MIB), (int64_t)MIB);
    rawstor_sqe discard = make_sqe(RAWSTOR_OP_DISCARD, obj, 7 * MIB, MIB, NULL, 105);
    CHECK_EQ(run_one(q, &discard).result, 0);
    memset(big, 0xff, MIB);
    CHECK_EQ(rawstor_object_pread(obj, big, MIB, 7 * MIB), (int64_t)MIB);
    CHECK(all_zero(big, MIB));

    /* An unaligned discard across a chunk boundary keeps its neighbours. */
    uint8_t *two_mib = malloc(2 * MIB);
    CHECK(two_mib);
    fill(big, MIB, 401);
    CHECK_EQ(rawstor_object_pwrite(obj, big, MIB, 8 * MIB + MIB / 2), (int64_t)MIB);
    discard = make_sqe(RAWSTOR_OP_DISCARD, obj, 8 * MIB + MIB / 2 + 1000, MIB - 3000, NULL, 106);
    CHECK_EQ(run_one(q, &discard).result, 0);
    CHECK_EQ(rawstor_object_pread(obj, two_mib, MIB, 8 * MIB + MIB / 2), (int64_t)MIB);
    CHECK(memcmp(two_mib, big, 1000) == 0);
    CHECK(all_zero(two_mib + 1000, MIB - 3000));
    CHECK(memcmp(two_mib + MIB - 2000, big + MIB - 2000, 2000) == 0);

    /* Write zeroes likewise. */
    fill(big, MIB, 402);
    CHECK_EQ(rawstor_object_pwrite(obj, big, MIB, 10 * MIB), (int64_t)MIB);
    rawstor_sqe wz = make_sqe(RAWSTOR_OP_WRITE_ZEROES, obj, 10 * MIB, MIB, NULL, 107);
    CHECK_EQ(run_one(q, &wz).result, 0);
    memset(big, 0xff, MIB);
    CHECK_EQ(rawstor_object_pread(obj, big, MIB, 10 * MIB), (int64_t)MIB);
    CHECK(all_zero(big, MIB));
    fill(big, MIB, 403);
    CHECK_EQ(rawstor_object_pwrite(obj, big, MIB, 10 * MIB), (int64_t)MIB);
    wz = make_sqe(RAWSTOR_OP_WRITE_ZEROES, obj, 10 * MIB + 10, 100, NULL, 108);
    CHECK_EQ(run_one(q, &wz).result, 0);
    CHECK_EQ(rawstor_object_pread(obj, two_mib, 200, 10 * MIB), 200);
    CHECK(memcmp(two_mib, big, 10) == 0);
    CHECK(all_zero(two_mib + 10, 100));
    CHECK(memcmp(two_mib + 110, big + 110, 90) == 0);

    /* Range operations past the end. */
    discard = make_sqe(RAWSTOR_OP_DISCARD, obj, OBJ_SIZE - BLK, 2 * BLK, NULL, 109);
    CHECK_EQ(run_one(q, &discard).result, -ENXIO);

    /* A second handle: FUA and flush through it, reap, then close is 0. */
    CHECK_EQ(rawstor_queue_reap(q, cqes, 4, 0, 0), 0);
    rawstor_object *h2 = NULL;
    CHECK_EQ(rawstor_object_open(inst, target, &h2), 0);
    fill(buf, BLK, 404);
    rawstor_sqe pair[2];
    pair[0] = make_sqe(RAWSTOR_OP_WRITE, h2, off, BLK, buf, 110);
    pair[0].flags = RAWSTOR_SQE_FUA;
    pair[1] = make_sqe(RAWSTOR_OP_FLUSH, h2, 0, 0, NULL, 111);
    CHECK_EQ(rawstor_queue_submit(q, pair, 2), 2);
    CHECK_EQ(rawstor_queue_reap(q, cqes, 4, 2, 5000), 2);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(cqes[i].result, cqes[i].user_data == 110 ? BLK : 0);
    CHECK_EQ(rawstor_object_close(h2), 0);
    CHECK_EQ(rawstor_object_pread(obj, rbuf, BLK, off), BLK);
    CHECK(memcmp(buf, rbuf, BLK) == 0);
    fill(buf, BLK, 300); /* restore what test_resize expects there */
    CHECK_EQ(rawstor_object_pwrite(obj, buf, BLK, off), BLK);
    free(big);
    free(two_mib);
    rawstor_queue_free(q);
}

static void test_resize(rawstor *inst, const char *target, rawstor_object **objp)
{
    rawstor_object *obj = *objp;
    rawstor_object_info info;
    static uint8_t buf[BLK], rbuf[BLK];

    CHECK_EQ(rawstor_object_resize(obj, 32 * MIB, 0), 0);
    CHECK_EQ(rawstor_object_stat(obj, &info), 0);
    CHECK_EQ(info.size, 32 * MIB);
    fill(buf, BLK, 500);
    CHECK_EQ(rawstor_object_pwrite(obj, buf, BLK, 32 * MIB - BLK), BLK);
    CHECK_EQ(rawstor_object_pread(obj, rbuf, BLK, 32 * MIB - BLK), BLK);
    CHECK(memcmp(buf, rbuf, BLK) == 0);
    CHECK_EQ(rawstor_object_pread(obj, rbuf, BLK, 20 * MIB), BLK);
    CHECK(all_zero(rbuf, BLK));

    /* Data that a shrink will cut off. */
    fill(buf, BLK, 501);
    CHECK_EQ(rawstor_object_pwrite(obj, buf, BLK, 12 * MIB), BLK);

    CHECK_EQ(rawstor_object_resize(obj, 8 * MIB, 0), -EINVAL);
    CHECK_EQ(rawstor_object_stat(obj, &info), 0);
    CHECK_EQ(info.size, 32 * MIB);
    CHECK_EQ(rawstor_object_resize(obj, 8 * MIB, 2), -EINVAL); /* unknown flag */
    CHECK_EQ(rawstor_object_resize(obj, 8 * MIB + 1, RAWSTOR_RESIZE_SHRINK), -EINVAL);
    CHECK_EQ(rawstor_object_resize(obj, 0, RAWSTOR_RESIZE_SHRINK), -EINVAL);
    CHECK_EQ(rawstor_object_resize(NULL, 8 * MIB, 0), -EINVAL);
    CHECK_EQ(rawstor_object_stat(obj, &info), 0);
    CHECK_EQ(info.size, 32 * MIB);

    CHECK_EQ(rawstor_object_resize(obj, 8 * MIB, RAWSTOR_RESIZE_SHRINK), 0);
    CHECK_EQ(rawstor_object_stat(obj, &info), 0);
    CHECK_EQ(info.size, 8 * MIB);
    CHECK_EQ(rawstor_object_pread(obj, rbuf, BLK, 8 * MIB), -ENXIO);
    CHECK_EQ(rawstor_object_pread(obj, rbuf, BLK, 8 * MIB - BLK), BLK);

    /* The size survives close and reopen; grown back, the cut-off data is gone. */
    CHECK_EQ(rawstor_object_close(obj), 0);
    obj = NULL;
    CHECK_EQ(rawstor_object_open(inst, target, &obj), 0);
    CHECK_EQ(rawstor_object_stat(obj, &info), 0);
    CHECK_EQ(info.size, 8 * MIB);
    CHECK_EQ(rawstor_object_resize(obj, OBJ_SIZE, 0), 0);
    memset(rbuf, 0xff, BLK);
    CHECK_EQ(rawstor_object_pread(obj, rbuf, BLK, 12 * MIB), BLK);
    CHECK(all_zero(rbuf, BLK));
    /* Data below the cut stays. */
    uint8_t expect[BLK];
    fill(expect, BLK, 300);
    CHECK_EQ(rawstor_object_pread(obj, rbuf, BLK, 6 * MIB + 123 * BLK), BLK);
    CHECK(memcmp(expect, rbuf, BLK) == 0);
    *objp = obj;
}

static void test_list(rawstor *inst)
{
    enum { N = 5 };
    char loc[128];
    char targets[N][RAWSTOR_TARGET_MAX];
    make_location(loc, sizeof(loc), dir2);

    for (int i = 0; i < N; i++) {
        rawstor_create_spec spec = {.size = (uint64_t)(i + 1) * MIB, .chunk_size = CHUNK,
                                    .uuid = NULL};
        CHECK(rawstor_object_create(inst, loc, &spec, targets[i], RAWSTOR_TARGET_MAX) > 0);
    }

    rawstor_object_info all[N + 4];
    size_t total = 0;
    const char *after = NULL;
    char last[RAWSTOR_UUID_BUF];
    int pages = 0;
    for (;;) {
        rawstor_object_info page[2];
        size_t count = 99;
        memset(page, 0, sizeof(page));
        CHECK_EQ(rawstor_object_list(inst, loc, after, page, 2, &count), 0);
        CHECK(count <= 2);
        CHECK(total + count <= N);
        for (size_t i = 0; i < count; i++)
            all[total++] = page[i];
        pages++;
        CHECK(pages <= N + 1);
        if (count < 2)
            break;
        strcpy(last, page[count - 1].uuid);
        after = last;
    }
    CHECK_EQ(total, N);
    CHECK_EQ(pages, 3);
    for (size_t i = 0; i < total; i++) {
        CHECK_EQ(strlen(all[i].uuid), 36);
        if (i > 0)
            CHECK(strcmp(all[i - 1].uuid, all[i].uuid) < 0);
        /* It is one of ours, with its size. */
        int found = 0;
        for (int j = 0; j < N; j++) {
            const char *t = targets[j];
            if (strcmp(t + strlen(t) - 36, all[i].uuid) == 0) {
                CHECK_EQ(all[i].size, (uint64_t)(j + 1) * MIB);
                found++;
            }
        }
        CHECK_EQ(found, 1);
        CHECK_EQ(all[i].chunk_size, CHUNK);
        CHECK_EQ(all[i].block_size, 4096);
    }

    /* One page that holds everything; max 0; a bad `after`. */
    rawstor_object_info big[8];
    size_t count = 99;
    CHECK_EQ(rawstor_object_list(inst, loc, NULL, big, 8, &count), 0);
    CHECK_EQ(count, N);
    for (size_t i = 0; i < N; i++)
        CHECK(strcmp(big[i].uuid, all[i].uuid) == 0);
    count = 99;
    CHECK_EQ(rawstor_object_list(inst, loc, NULL, NULL, 0, &count), 0);
    CHECK_EQ(count, 0);
    count = 99;
    CHECK_EQ(rawstor_object_list(inst, loc, all[N - 1].uuid, big, 8, &count), 0);
    CHECK_EQ(count, 0);
    count = 99;
    CHECK_EQ(rawstor_object_list(inst, loc, all[1].uuid, big, 8, &count), 0);
    CHECK_EQ(count, N - 2);
    CHECK(strcmp(big[0].uuid, all[2].uuid) == 0);
    CHECK_EQ(rawstor_object_list(inst, loc, "nope", big, 8, &count), -EINVAL);
    CHECK_EQ(rawstor_object_list(inst, loc, NULL, big, 8, NULL), -EINVAL);
    CHECK_EQ(rawstor_object_list(inst, "file://relative", NULL, big, 8, &count), -EINVAL);
}

static void test_remove(rawstor *inst, const char *target, rawstor_object *obj)
{
    char loc[128];
    make_location(loc, sizeof(loc), dir1);
    size_t before = count_objects(inst, loc);

    CHECK_EQ(rawstor_object_remove(inst, target), -EBUSY);
    /* A second handle to the same object shares its data. */
    rawstor_object *obj2 = NULL;
    CHECK_EQ(rawstor_object_open(inst, target, &obj2), 0);
    static uint8_t buf[BLK], rbuf[BLK];
    fill(buf, BLK, 600);
    CHECK_EQ(rawstor_object_pwrite(obj, buf, BLK, 0), BLK);
    CHECK_EQ(rawstor_object_pread(obj2, rbuf, BLK, 0), BLK);
    CHECK(memcmp(buf, rbuf, BLK) == 0);
    CHECK_EQ(rawstor_object_close(obj), 0);
    CHECK_EQ(rawstor_object_remove(inst, target), -EBUSY); /* obj2 still open */
    CHECK_EQ(rawstor_object_close(obj2), 0);

    CHECK_EQ(rawstor_object_remove(inst, target), 0);
    CHECK_EQ(count_objects(inst, loc), before - 1);
    rawstor_object *gone = NULL;
    CHECK_EQ(rawstor_object_open(inst, target, &gone), -ENOENT);
    CHECK(gone == NULL);
    CHECK_EQ(rawstor_object_remove(inst, target), -ENOENT);
    CHECK_EQ(rawstor_object_remove(inst, NULL), -EINVAL);
    CHECK_EQ(rawstor_object_remove(NULL, target), -EINVAL);
}

static void test_null_handles(const char *target)
{
    rawstor_object *obj = NULL;
    CHECK_EQ(rawstor_object_open(NULL, target, &obj), -EINVAL);
    CHECK(obj == NULL);
    CHECK(strstr(rawstor_last_error(), "NULL") != NULL);
    CHECK_EQ(rawstor_object_close(NULL), -EINVAL);
    rawstor_free(NULL);
    rawstor_queue_free(NULL);
}

/* Objects and queues stay usable after their instance is freed. */
static void test_outlive_instance(void)
{
    rawstor *inst = NULL;
    rawstor_object *obj = NULL;
    rawstor_queue *q = NULL;
    char loc[128], target[RAWSTOR_TARGET_MAX];
    static uint8_t buf[BLK], rbuf[BLK];
    rawstor_cqe cqe;

    make_location(loc, sizeof(loc), dir3);
    CHECK_EQ(rawstor_new(NULL, &inst), 0);
    rawstor_create_spec spec = {.size = 4 * MIB, .chunk_size = CHUNK, .uuid = NULL};
    CHECK(rawstor_object_create(inst, loc, &spec, target, sizeof(target)) > 0);
    CHECK_EQ(rawstor_object_open(inst, target, &obj), 0);
    CHECK_EQ(rawstor_queue_new(inst, 4, &q), 0);
    rawstor_free(inst);

    fill(buf, BLK, 700);
    rawstor_sqe fua = make_sqe(RAWSTOR_OP_WRITE, obj, MIB, BLK, buf, 1);
    fua.flags = RAWSTOR_SQE_FUA;
    CHECK_EQ(rawstor_queue_submit(q, &fua, 1), 1);
    CHECK_EQ(rawstor_queue_reap(q, &cqe, 1, 1, 5000), 1);
    CHECK_EQ(cqe.result, BLK);
    rawstor_sqe flush = make_sqe(RAWSTOR_OP_FLUSH, obj, 0, 0, NULL, 2);
    CHECK_EQ(rawstor_queue_submit(q, &flush, 1), 1);
    CHECK_EQ(rawstor_queue_reap(q, &cqe, 1, 1, 5000), 1);
    CHECK_EQ(cqe.result, 0);
    CHECK_EQ(rawstor_object_pread(obj, rbuf, BLK, MIB), BLK);
    CHECK(memcmp(buf, rbuf, BLK) == 0);
    CHECK_EQ(rawstor_object_close(obj), 0);
    rawstor_queue_free(q);
}

/* The header's constants, as a C user reads them. */
static void test_header_constants(void)
{
    CHECK_EQ(RAWSTOR_TARGET_MAX, 4096);
    CHECK(RAWSTOR_UUID_BUF >= 36 + 1);
    CHECK_EQ(RAWSTOR_BLOCK_SIZE, 4096);
    CHECK_EQ(RAWSTOR_CHUNK_SIZE_MIN, 64 * 1024);
    CHECK_EQ(RAWSTOR_CHUNK_SIZE_MAX, 1024 * MIB);
    CHECK_EQ(RAWSTOR_CHUNK_SIZE_DEFAULT, 64 * MIB);
    /* 256 TiB: the macro must have a type that holds 2^48. */
    CHECK(sizeof(RAWSTOR_OBJECT_SIZE_MAX) >= sizeof(uint64_t));
    CHECK((uint64_t)RAWSTOR_OBJECT_SIZE_MAX == (uint64_t)1 << 48);
}

int main(void)
{
    alarm(600); /* a hang fails the test */

    strcpy(dir1, "/tmp/rawstor-api-XXXXXX");
    strcpy(dir2, "/tmp/rawstor-api-XXXXXX");
    strcpy(dir3, "/tmp/rawstor-api-XXXXXX");
    CHECK(mkdtemp(dir1) != NULL);
    CHECK(mkdtemp(dir2) != NULL);
    CHECK(mkdtemp(dir3) != NULL);
    atexit(cleanup);

    test_basics();
    test_options();

    rawstor *inst = NULL;
    CHECK_EQ(rawstor_new(NULL, &inst), 0);

    char target[RAWSTOR_TARGET_MAX];
    rawstor_object *obj = NULL;
    test_create(inst, target, sizeof(target));
    test_target_split(target);
    test_open_stat(inst, target, &obj);
    test_sync_io(obj);
    test_block_status(obj);
    test_queue_basics(inst, obj);
    test_vectors(inst, obj);
    test_async_ops(inst, target, obj);
    test_resize(inst, target, &obj);
    test_list(inst);
    test_remove(inst, target, obj);
    test_null_handles(target);
    rawstor_free(inst);

    test_outlive_instance();
    test_header_constants();

    cleanup();
    CHECK(access(dir1, F_OK) != 0 && access(dir2, F_OK) != 0 && access(dir3, F_OK) != 0);
    printf("test_api: ok\n");
    return 0;
}
