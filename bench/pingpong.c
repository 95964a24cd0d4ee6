/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The loopback TCP round trip that ost:// QD1 is measured against: a
 * client thread sends a 64-byte request and waits for a 4 KiB reply from a
 * server thread, both blocking on their sockets, for SECONDS seconds.
 *
 *   pingpong [SECONDS]      prints "result label=pingpong iops=... p50_us=..."
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define REQUEST 64
#define REPLY 4096
#define MAX_SAMPLES (1 << 22)

static int full(int fd, char *buf, size_t len, int out)
{
	size_t at = 0;

	while (at < len) {
		ssize_t n = out ? write(fd, buf + at, len - at) : read(fd, buf + at, len - at);

		if (n <= 0)
			return -1;
		at += (size_t)n;
	}
	return 0;
}

static void *serve(void *arg)
{
	int fd = accept(*(int *)arg, NULL, NULL);
	int one = 1;
	char req[REQUEST], reply[REPLY];

	memset(reply, 7, sizeof(reply));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	while (full(fd, req, sizeof(req), 0) == 0 && full(fd, reply, sizeof(reply), 1) == 0)
		;
	close(fd);
	return NULL;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;

	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 3;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int lfd = socket(AF_INET, SOCK_STREAM, 0), fd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	char req[REQUEST] = { 1 }, reply[REPLY];
	float *lat = malloc(sizeof(float) * MAX_SAMPLES);
	long n = 0;
	pthread_t server;
	double start, end, t;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (!lat || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&sa, &len)) {
		perror("pingpong: listen");
		return 1;
	}
	pthread_create(&server, NULL, serve, &lfd);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		perror("pingpong: connect");
		return 1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	start = now();
	end = start + seconds;
	for (t = start; t < end;) {
		double t0 = t;

		if (full(fd, req, sizeof(req), 1) || full(fd, reply, sizeof(reply), 0)) {
			fprintf(stderr, "pingpong: connection lost\n");
			return 1;
		}
		t = now();
		if (n < MAX_SAMPLES)
			lat[n] = (float)((t - t0) * 1e6);
		n++;
	}
	close(fd);
	pthread_join(server, NULL);
	{
		long k = n < MAX_SAMPLES ? n : MAX_SAMPLES;

		qsort(lat, (size_t)k, sizeof(float), cmp);
		printf("result label=pingpong iops=%.0f mbps=%.1f p50_us=%.2f p99_us=%.2f p999_us=%.2f\n",
		       n / (t - start), n * (double)REPLY / (t - start) / 1e6, lat[k / 2],
		       lat[k * 99 / 100], lat[k * 999 / 1000]);
	}
	free(lat);
	return 0;
}
