// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * fio external ioengine over librawstor's C API.
 *
 *   fio --ioengine=external:PATH/librawstor_fio.so \
 *       --filename='file\:///var/lib/rawstor/UUID' --rw=randread ...
 *
 * Each fio job (process or thread) gets its own rawstor instance and one
 * queue as deep as its iodepth. ->queue stages submission entries,
 * ->commit submits them as one batch, ->getevents waits in
 * rawstor_queue_reap, which sleeps without spinning until enough
 * completions have arrived. The object's size is the file size, so --size is not
 * needed. This file is GPL-2.0-or-later because it includes fio's headers.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fio.h"
#include "optgroup.h"

#include "rawstor.h"

struct rawstor_fio_options {
	void *pad; /* fio treats offset 0 as "no option" */
	unsigned int timeout_ms;
	unsigned int retries;
	unsigned int fua;
};

static struct fio_option options[] = {
	{
		.name = "rawstor_timeout_ms",
		.lname = "rawstor request deadline",
		.type = FIO_OPT_INT,
		.off1 = offsetof(struct rawstor_fio_options, timeout_ms),
		.help = "Deadline of one network request in milliseconds (0: library default or RAWSTOR_OPTS_TIMEOUT_MS)",
		.def = "0",
		.category = FIO_OPT_C_ENGINE,
		.group = FIO_OPT_G_INVALID,
	},
	{
		.name = "rawstor_retries",
		.lname = "rawstor retries",
		.type = FIO_OPT_INT,
		.off1 = offsetof(struct rawstor_fio_options, retries),
		.help = "Attempts of a failed network request before it fails (0: library default or RAWSTOR_OPTS_IO_ATTEMPTS)",
		.def = "0",
		.category = FIO_OPT_C_ENGINE,
		.group = FIO_OPT_G_INVALID,
	},
	{
		.name = "rawstor_fua",
		.lname = "rawstor FUA writes",
		.type = FIO_OPT_BOOL,
		.off1 = offsetof(struct rawstor_fio_options, fua),
		.help = "Submit every write with FUA, durable on completion (--sync=1 does the same)",
		.def = "0",
		.category = FIO_OPT_C_ENGINE,
		.group = FIO_OPT_G_INVALID,
	},
	{
		.name = NULL,
	},
};

/* Distinct failure messages remembered per job (later ones replace the
 * oldest, so a long run may log a message again). */
#define LOGGED_MAX 16

struct rawstor_fio_data {
	rawstor *instance;
	rawstor_queue *queue;
	unsigned int depth;
	rawstor_sqe *staged; /* built by ->queue, submitted by ->commit */
	unsigned int nr_staged;
	rawstor_cqe *cqes;
	struct io_u **events; /* filled by ->getevents, read by ->event */
	unsigned int inflight;
	/* hashes of the failure messages logged, so each is logged once */
	uint64_t logged[LOGGED_MAX];
	unsigned int nr_logged;
};

/*
 * fio shows only the errno of a failed I/O ("Device or resource busy");
 * the library knows why ("another writer holds the lease"): log its
 * message, once per distinct message.
 */
static void log_failure(struct rawstor_fio_data *d, uint64_t user_data, int64_t res)
{
	const char *msg = rawstor_queue_error(d->queue, user_data);
	uint64_t hash = 1469598103934665603ULL; /* FNV-1a */
	const char *p;
	unsigned int i;

	if (!msg)
		msg = rawstor_strerror((int)res);
	for (p = msg; *p; p++)
		hash = (hash ^ (unsigned char)*p) * 1099511628211ULL;
	for (i = 0; i < d->nr_logged && i < LOGGED_MAX; i++)
		if (d->logged[i] == hash)
			return;
	d->logged[d->nr_logged++ % LOGGED_MAX] = hash;
	log_err("fio: rawstor: %s\n", msg);
}

static int new_instance(struct thread_data *td, rawstor **out)
{
	struct rawstor_fio_options *o = td->eo;
	rawstor_options opts;
	int rc;

	rc = rawstor_options_init(&opts);
	if (rc < 0)
		return rc;
	if (o->timeout_ms)
		opts.timeout_ms = o->timeout_ms;
	if (o->retries)
		opts.retries = o->retries;
	return rawstor_new(&opts, out);
}

static void report(struct thread_data *td, int rc, const char *what,
		   const char *name)
{
	log_err("fio: rawstor: %s '%s': %s\n", what, name,
		rawstor_last_error());
	td_verror(td, -rc, what);
}

/*
 * Runs in the parent before jobs start: the size of every file comes from
 * its object, through a short-lived instance of its own.
 */
static int fio_rawstor_setup(struct thread_data *td)
{
	struct fio_file *f;
	unsigned int i;
	rawstor *instance;
	int rc;

	rc = new_instance(td, &instance);
	if (rc < 0) {
		report(td, rc, "cannot start an instance for", td->o.name);
		return 1;
	}
	for_each_file(td, f, i) {
		rawstor_object *object;
		rawstor_object_info info;

		rc = rawstor_object_open(instance, f->file_name, &object);
		if (rc < 0) {
			report(td, rc, "cannot open", f->file_name);
			break;
		}
		rc = rawstor_object_stat(object, &info);
		rawstor_object_close(object);
		if (rc < 0) {
			report(td, rc, "cannot stat", f->file_name);
			break;
		}
		f->real_file_size = info.size;
		fio_file_set_size_known(f);
	}
	rawstor_free(instance);
	return rc < 0 ? 1 : 0;
}

static void fio_rawstor_cleanup(struct thread_data *td)
{
	struct rawstor_fio_data *d = td->io_ops_data;

	if (!d)
		return;
	rawstor_queue_free(d->queue);
	rawstor_free(d->instance);
	free(d->staged);
	free(d->cqes);
	free(d->events);
	free(d);
	td->io_ops_data = NULL;
}

/* Runs in each job (after fork, or in its thread). */
static int fio_rawstor_init(struct thread_data *td)
{
	struct rawstor_fio_data *d;
	int rc;

	d = calloc(1, sizeof(*d));
	if (!d) {
		td_verror(td, ENOMEM, "calloc");
		return 1;
	}
	td->io_ops_data = d;
	d->depth = td->o.iodepth ? td->o.iodepth : 1;
	d->staged = calloc(d->depth, sizeof(*d->staged));
	d->cqes = calloc(d->depth, sizeof(*d->cqes));
	d->events = calloc(d->depth, sizeof(*d->events));
	if (!d->staged || !d->cqes || !d->events) {
		td_verror(td, ENOMEM, "calloc");
		return 1;
	}
	rc = new_instance(td, &d->instance);
	if (rc < 0) {
		report(td, rc, "cannot start an instance for", td->o.name);
		return 1;
	}
	rc = rawstor_queue_new(d->instance, d->depth, &d->queue);
	if (rc < 0) {
		report(td, rc, "cannot make a queue for", td->o.name);
		return 1;
	}
	return 0;
}

static int fio_rawstor_open_file(struct thread_data *td, struct fio_file *f)
{
	struct rawstor_fio_data *d = td->io_ops_data;
	rawstor_object *object;
	int rc;

	rc = rawstor_object_open(d->instance, f->file_name, &object);
	if (rc < 0) {
		report(td, rc, "cannot open", f->file_name);
		return 1;
	}
	FILE_SET_ENG_DATA(f, object);
	return 0;
}

static int fio_rawstor_close_file(struct thread_data *td, struct fio_file *f)
{
	rawstor_object *object = FILE_ENG_DATA(f);
	int rc;

	(void)td;
	if (!object)
		return 0;
	FILE_SET_ENG_DATA(f, NULL);
	rc = rawstor_object_close(object);
	if (rc < 0) {
		log_err("fio: rawstor: closing '%s': %s\n", f->file_name,
			rawstor_last_error());
		return -rc;
	}
	return 0;
}

static enum fio_q_status fio_rawstor_queue(struct thread_data *td,
					   struct io_u *io_u)
{
	struct rawstor_fio_data *d = td->io_ops_data;
	struct rawstor_fio_options *o = td->eo;
	const rawstor_object *object = FILE_ENG_DATA(io_u->file);
	rawstor_sqe *sqe;

	fio_ro_check(td, io_u);
	if (d->nr_staged + d->inflight >= d->depth)
		return FIO_Q_BUSY;
	sqe = &d->staged[d->nr_staged];
	memset(sqe, 0, sizeof(*sqe));
	sqe->object = object;
	sqe->offset = io_u->offset;
	sqe->length = io_u->xfer_buflen;
	sqe->addr = io_u->xfer_buf;
	sqe->user_data = (uint64_t)(uintptr_t)io_u;

	switch (io_u->ddir) {
	case DDIR_READ:
		sqe->opcode = RAWSTOR_OP_READ;
		break;
	case DDIR_WRITE:
		sqe->opcode = RAWSTOR_OP_WRITE;
		if (o->fua || td->o.sync_io)
			sqe->flags = RAWSTOR_SQE_FUA;
		break;
	case DDIR_TRIM:
		sqe->opcode = RAWSTOR_OP_DISCARD;
		sqe->addr = NULL;
		break;
	case DDIR_SYNC:
	case DDIR_DATASYNC:
	case DDIR_SYNC_FILE_RANGE:
		sqe->opcode = RAWSTOR_OP_FLUSH;
		sqe->offset = 0;
		sqe->length = 0;
		sqe->addr = NULL;
		break;
	default:
		io_u->error = EINVAL;
		return FIO_Q_COMPLETED;
	}
	d->nr_staged++;
	return FIO_Q_QUEUED;
}

static int fio_rawstor_commit(struct thread_data *td)
{
	struct rawstor_fio_data *d = td->io_ops_data;
	unsigned int done = 0;

	if (fio_fill_issue_time(td)) {
		/*
		 * file:// work runs inside submit, so latency starts here, not
		 * when fio's queue path returns (FIO_ASYNCIO_SETS_ISSUE_TIME).
		 */
		struct timespec now;
		unsigned int i;

		fio_gettime(&now, NULL);
		for (i = 0; i < d->nr_staged; i++) {
			struct io_u *io_u =
				(struct io_u *)(uintptr_t)d->staged[i].user_data;

			io_u->issue_time = now;
			io_u_queued(td, io_u);
		}
	}
	while (done < d->nr_staged) {
		int rc = rawstor_queue_submit(d->queue, d->staged + done,
					      d->nr_staged - done);
		if (rc == -EAGAIN)
			break; /* the rest stays staged until completions free room */
		if (rc < 0) {
			log_err("fio: rawstor: submit: %s\n",
				rawstor_last_error());
			td_verror(td, -rc, "rawstor_queue_submit");
			return -rc;
		}
		done += rc;
	}
	if (done) {
		/* fio's accounting: the staged entries are now issued */
		io_u_mark_submit(td, done);
		d->inflight += done;
		memmove(d->staged, d->staged + done,
			(d->nr_staged - done) * sizeof(*d->staged));
		d->nr_staged -= done;
	}
	return 0;
}

/*
 * Takes completions, waiting in rawstor_queue_reap until `min` are there.
 * The library sleeps without spinning: on a condition variable, or, for
 * an ost:// queue, in poll(2) on the connection's socket and the queue's
 * eventfd, reading the replies on this thread (one wake-up per reply).
 */
static int fio_rawstor_getevents(struct thread_data *td, unsigned int min,
				 unsigned int max, const struct timespec *t)
{
	struct rawstor_fio_data *d = td->io_ops_data;
	int timeout_ms = -1;
	unsigned int got = 0;

	if (t)
		timeout_ms = (int)(t->tv_sec * 1000 + t->tv_nsec / 1000000);
	if (max > d->depth)
		max = d->depth;

	for (;;) {
		int i, rc;

		/* entries still staged (the queue was full) go in as room frees */
		if (d->nr_staged && fio_rawstor_commit(td))
			return -1;
		rc = rawstor_queue_reap(d->queue, d->cqes, max - got,
					min > got ? min - got : 0, timeout_ms);
		if (rc < 0) {
			log_err("fio: rawstor: reap: %s\n",
				rawstor_last_error());
			td_verror(td, -rc, "rawstor_queue_reap");
			return -1;
		}
		for (i = 0; i < rc; i++) {
			struct io_u *io_u =
				(struct io_u *)(uintptr_t)d->cqes[i].user_data;
			int64_t res = d->cqes[i].result;

			if (res < 0) {
				io_u->error = (int)-res;
				log_failure(d, d->cqes[i].user_data, res);
			} else {
				io_u->error = 0;
				if (io_u->ddir == DDIR_READ || io_u->ddir == DDIR_WRITE)
					io_u->resid = io_u->xfer_buflen - res;
			}
			d->events[got++] = io_u;
		}
		d->inflight -= rc;
		/* done, timed out, or nothing left that could complete */
		if (got >= min || got >= max || rc == 0 || d->nr_staged == 0)
			break;
	}
	return (int)got;
}

static struct io_u *fio_rawstor_event(struct thread_data *td, int event)
{
	struct rawstor_fio_data *d = td->io_ops_data;

	return d->events[event];
}

static int fio_rawstor_invalidate(struct thread_data *td, struct fio_file *f)
{
	(void)td;
	(void)f;
	return 0; /* no page cache of ours to drop */
}

struct ioengine_ops ioengine = {
	.name = "rawstor",
	.version = FIO_IOOPS_VERSION,
	.flags = FIO_DISKLESSIO | FIO_NOEXTEND | FIO_NODISKUTIL |
		 FIO_ASYNCIO_SETS_ISSUE_TIME,
	.setup = fio_rawstor_setup,
	.init = fio_rawstor_init,
	.cleanup = fio_rawstor_cleanup,
	.open_file = fio_rawstor_open_file,
	.close_file = fio_rawstor_close_file,
	.invalidate = fio_rawstor_invalidate,
	.queue = fio_rawstor_queue,
	.commit = fio_rawstor_commit,
	.getevents = fio_rawstor_getevents,
	.event = fio_rawstor_event,
	.options = options,
	.option_struct_size = sizeof(struct rawstor_fio_options),
};
