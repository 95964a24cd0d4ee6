/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Threads test: one instance and one object shared by 4 threads, each
 * with its own queue (depth 32) writing then verifying its own region,
 * and a 5th thread doing synchronous pwrite/pread on another region at
 * the same time.
 *
 *   cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pedantic \
 *      -I include tests/c/test_threads.c -L target/release -lrawstor -lpthread \
 *      -o test_threads
 *   LD_LIBRARY_PATH=target/release ./test_threads
 */

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rawstor.h"
#include "testutil.h"

/* In a worker: report, mark the worker failed and leave it. */
#define TCHECK(w, cond)                                                         \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "%s:%d: [thread %d] CHECK failed: %s\n"             \
                            "  last error: %s\n",                               \
                    __FILE__, __LINE__, (w)->id, #cond, rawstor_last_error());  \
            (w)->failed = 1;                                                    \
            goto out;                                                           \
        }                                                                       \
    } while (0)

#define MIB (1024ull * 1024ull)
#define OBJ_SIZE (64 * MIB)
#define CHUNK (1 * MIB)
#define BLK 4096u
#define QUEUE_THREADS 4
#define DEPTH 32
/* Regions in blocks; their edges fall inside chunks, so neighbours share one. */
#define REGION_BLOCKS 3150u
#define SYNC_FIRST_BLOCK (QUEUE_THREADS * REGION_BLOCKS)
#define SYNC_BLOCKS ((unsigned)(OBJ_SIZE / BLK) - SYNC_FIRST_BLOCK)
#define SYNC_PASSES 3
#define SYNC_ID QUEUE_THREADS

/* The content of one block written by `writer` (a thread id) in `pass`. */
static void pattern(uint8_t *buf, unsigned writer, unsigned pass, uint64_t block)
{
    uint64_t tag = ((uint64_t)writer << 56) | ((uint64_t)pass << 48) | block;
    for (unsigned i = 0; i < BLK; i++)
        buf[i] = (uint8_t)((writer + 1) * 37u + pass * 101u + block * 13u + i * 7u + (i >> 8));
    memcpy(buf, &tag, sizeof(tag));
}

static int pattern_ok(const uint8_t *buf, unsigned writer, unsigned pass, uint64_t block)
{
    uint8_t want[BLK];
    pattern(want, writer, pass, block);
    return memcmp(buf, want, BLK) == 0;
}

struct worker {
    int id;
    rawstor *inst;
    rawstor_object *obj;
    uint64_t first_block;
    unsigned blocks;
    int failed;
    unsigned long ios;
};

struct slot {
    uint8_t buf[BLK];
    struct iovec iov[4];
    uint64_t block;
    int busy;
};

/* Every thread has its own last error. */
static int check_last_error_is_per_thread(struct worker *w)
{
    uint8_t b[16];
    if (rawstor_last_error()[0] != '\0') {
        fprintf(stderr, "[thread %d] fresh thread has last error '%s'\n", w->id,
                rawstor_last_error());
        return 0;
    }
    if (rawstor_object_pread(w->obj, b, sizeof(b), OBJ_SIZE) != -ENXIO)
        return 0;
    return strstr(rawstor_last_error(), "past the end") != NULL;
}

/*
 * One pass over the region through the queue: writes (write == 1) or
 * reads and verifies. Entries vary: plain, FUA, writev/readv with
 * unaligned iovecs, and an occasional flush barrier.
 */
static int queue_pass(struct worker *w, rawstor_queue *q, struct slot *slots, int write)
{
    rawstor_sqe sqes[DEPTH];
    rawstor_cqe cqes[DEPTH];
    unsigned next = 0, done = 0, inflight = 0, flushes = 0, flushes_done = 0;

    while (done < w->blocks || flushes_done < flushes) {
        unsigned n = 0;
        for (unsigned s = 0; s < DEPTH && inflight + n < DEPTH; s++) {
            if (slots[s].busy)
                continue;
            if (next >= w->blocks)
                break;
            struct slot *sl = &slots[s];
            uint64_t block = w->first_block + next;
            rawstor_sqe *e = &sqes[n];
            memset(e, 0, sizeof(*e));
            e->object = w->obj;
            e->offset = block * BLK;
            e->user_data = ((uint64_t)next << 8) | s;
            sl->block = block;
            if (write)
                pattern(sl->buf, (unsigned)w->id, 0, block);
            else
                memset(sl->buf, 0, BLK);
            if (next % 7 == 3) {
                /* Unaligned iovecs: 1000 + 3000 + 96 + 0 bytes. */
                static const size_t lens[4] = {1000, 3000, 96, 0};
                size_t at = 0;
                for (unsigned i = 0; i < 4; i++) {
                    sl->iov[i].iov_base = sl->buf + at;
                    sl->iov[i].iov_len = lens[i];
                    at += lens[i];
                }
                e->opcode = write ? RAWSTOR_OP_WRITEV : RAWSTOR_OP_READV;
                e->iovcnt = 4;
                e->addr = sl->iov;
            } else {
                e->opcode = write ? RAWSTOR_OP_WRITE : RAWSTOR_OP_READ;
                e->length = BLK;
                e->addr = sl->buf;
                if (write && next % 97 == 5)
                    e->flags = RAWSTOR_SQE_FUA;
            }
            sl->busy = 1;
            next++;
            n++;
            /* Now and then a barrier, tagged with slot 0xff. */
            if (write && next % 499 == 0 && inflight + n < DEPTH) {
                rawstor_sqe *f = &sqes[n++];
                memset(f, 0, sizeof(*f));
                f->opcode = RAWSTOR_OP_FLUSH;
                f->object = w->obj;
                f->user_data = ((uint64_t)flushes << 8) | 0xff;
                flushes++;
            }
        }
        if (n > 0) {
            int rc = rawstor_queue_submit(q, sqes, n);
            TCHECK(w, rc == (int)n);
            inflight += n;
        }
        int got = rawstor_queue_reap(q, cqes, DEPTH, 1, 10000);
        TCHECK(w, got >= 1);
        TCHECK(w, (unsigned)got <= inflight);
        inflight -= (unsigned)got;
        for (int i = 0; i < got; i++) {
            unsigned s = (unsigned)(cqes[i].user_data & 0xff);
            w->ios++;
            if (s == 0xff) {
                TCHECK(w, cqes[i].result == 0);
                flushes_done++;
                continue;
            }
            TCHECK(w, s < DEPTH && slots[s].busy);
            TCHECK(w, cqes[i].result == (int64_t)BLK);
            TCHECK(w, (cqes[i].user_data >> 8) + w->first_block == slots[s].block);
            if (!write)
                TCHECK(w, pattern_ok(slots[s].buf, (unsigned)w->id, 0, slots[s].block));
            slots[s].busy = 0;
            done++;
        }
    }
    TCHECK(w, inflight == 0);
    TCHECK(w, rawstor_queue_reap(q, cqes, DEPTH, 0, 0) == 0);
    return 1;
out:
    return 0;
}

static void *queue_worker(void *arg)
{
    struct worker *w = arg;
    rawstor_queue *q = NULL;
    struct slot *slots = calloc(DEPTH, sizeof(*slots));

    TCHECK(w, slots != NULL);
    TCHECK(w, check_last_error_is_per_thread(w));
    TCHECK(w, rawstor_queue_new(w->inst, DEPTH, &q) == 0);
    TCHECK(w, queue_pass(w, q, slots, 1));
    TCHECK(w, queue_pass(w, q, slots, 0));
out:
    rawstor_queue_free(q);
    free(slots);
    return NULL;
}

/* Synchronous pwrite/pread on its own region, in pieces of varied size. */
static void *sync_worker(void *arg)
{
    struct worker *w = arg;
    const unsigned piece = 16; /* blocks */
    uint8_t *buf = malloc(piece * BLK);
    uint8_t *rbuf = malloc(piece * BLK);

    TCHECK(w, buf != NULL && rbuf != NULL);
    TCHECK(w, check_last_error_is_per_thread(w));
    for (unsigned pass = 0; pass < SYNC_PASSES; pass++) {
        for (unsigned b = 0; b < w->blocks; b += piece) {
            unsigned n = w->blocks - b < piece ? w->blocks - b : piece;
            uint64_t first = w->first_block + b;
            for (unsigned i = 0; i < n; i++)
                pattern(buf + i * BLK, SYNC_ID, pass, first + i);
            size_t len = (size_t)n * BLK;
            if ((b / piece) % 3 == 1) {
                /* Two unaligned writes making up the piece. */
                TCHECK(w, rawstor_object_pwrite(w->obj, buf, 5000, first * BLK) == 5000);
                TCHECK(w, rawstor_object_pwrite(w->obj, buf + 5000, len - 5000,
                                                first * BLK + 5000) == (int64_t)(len - 5000));
            } else {
                TCHECK(w, rawstor_object_pwrite(w->obj, buf, len, first * BLK) == (int64_t)len);
            }
            memset(rbuf, 0, len);
            TCHECK(w, rawstor_object_pread(w->obj, rbuf, len, first * BLK) == (int64_t)len);
            TCHECK(w, memcmp(buf, rbuf, len) == 0);
            w->ios += 2;
            if ((b / piece) % 50 == 0)
                TCHECK(w, rawstor_object_flush(w->obj) == 0);
        }
    }
out:
    free(buf);
    free(rbuf);
    return NULL;
}


static char dir[64];

static void cleanup(void)
{
    rm_rf(dir);
}

int main(void)
{
    char loc[128], target[RAWSTOR_TARGET_MAX];
    rawstor *inst = NULL;
    rawstor_object *obj = NULL;

    alarm(900); /* a hang fails the test */
    strcpy(dir, "/tmp/rawstor-threads-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    atexit(cleanup);
    snprintf(loc, sizeof(loc), "file://%s", dir);

    CHECK(rawstor_new(NULL, &inst) == 0);
    rawstor_create_spec spec = {.size = OBJ_SIZE, .chunk_size = CHUNK, .uuid = NULL};
    CHECK(rawstor_object_create(inst, loc, &spec, target, sizeof(target)) > 0);
    CHECK(rawstor_object_open(inst, target, &obj) == 0);

    /* The main thread's last error, which no worker may change. */
    rawstor_object *none = NULL;
    CHECK(rawstor_object_open(inst, "file:///nowhere/not-a-uuid", &none) == -EINVAL);
    char main_error[512];
    snprintf(main_error, sizeof(main_error), "%s", rawstor_last_error());
    CHECK(strstr(main_error, "bad target") != NULL);

    struct worker workers[QUEUE_THREADS + 1];
    pthread_t threads[QUEUE_THREADS + 1];
    for (int t = 0; t <= QUEUE_THREADS; t++) {
        workers[t] = (struct worker){
            .id = t,
            .inst = inst,
            .obj = obj,
            .first_block = t < QUEUE_THREADS ? (uint64_t)t * REGION_BLOCKS : SYNC_FIRST_BLOCK,
            .blocks = t < QUEUE_THREADS ? REGION_BLOCKS : SYNC_BLOCKS,
        };
    }
    for (int t = 0; t <= QUEUE_THREADS; t++)
        CHECK(pthread_create(&threads[t], NULL, t < QUEUE_THREADS ? queue_worker : sync_worker,
                             &workers[t]) == 0);
    int failed = 0;
    for (int t = 0; t <= QUEUE_THREADS; t++) {
        CHECK(pthread_join(threads[t], NULL) == 0);
        if (workers[t].failed) {
            fprintf(stderr, "thread %d failed\n", t);
            failed = 1;
        }
    }
    CHECK(!failed);
    for (int t = 0; t < QUEUE_THREADS; t++)
        CHECK(workers[t].ios >= 2 * REGION_BLOCKS);
    CHECK(strcmp(rawstor_last_error(), main_error) == 0);

    /* Everything, read again from the main thread. */
    uint8_t *all = malloc(OBJ_SIZE);
    CHECK(all != NULL);
    CHECK(rawstor_object_pread(obj, all, OBJ_SIZE, 0) == (int64_t)OBJ_SIZE);
    for (uint64_t b = 0; b < OBJ_SIZE / BLK; b++) {
        int ok = b < SYNC_FIRST_BLOCK
                     ? pattern_ok(all + b * BLK, (unsigned)(b / REGION_BLOCKS), 0, b)
                     : pattern_ok(all + b * BLK, SYNC_ID, SYNC_PASSES - 1, b);
        if (!ok)
            fprintf(stderr, "block %llu has the wrong content\n", (unsigned long long)b);
        CHECK(ok);
    }
    free(all);

    CHECK(rawstor_object_close(obj) == 0);
    CHECK(rawstor_object_remove(inst, target) == 0);
    rawstor_free(inst);
    cleanup();
    CHECK(access(dir, F_OK) != 0);
    printf("test_threads: ok\n");
    return 0;
}
