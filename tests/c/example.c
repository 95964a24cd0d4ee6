/* The smallest C program against an installed librawstor: built by
 * `make test-pkgconfig` with `cc example.c $(pkg-config --cflags --libs rawstor)`. */
#define _GNU_SOURCE
#include <rawstor.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    char dir[] = "/tmp/rawstor-example-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char location[256], target[RAWSTOR_TARGET_MAX], command[300];
    snprintf(location, sizeof location, "file://%s", dir);
    rawstor *instance = NULL;
    rawstor_object *object = NULL;
    rawstor_create_spec spec = {.size = 1 << 20, .chunk_size = 0, .uuid = NULL};
    char out[6] = {0};
    int rc = rawstor_new(NULL, &instance);
    if (rc == 0) rc = rawstor_object_create(instance, location, &spec, target, sizeof target) < 0 ? -1 : 0;
    if (rc == 0) rc = rawstor_object_open(instance, target, &object);
    if (rc == 0) rc = rawstor_object_pwrite(object, (const uint8_t *)"hello", 5, 4096) == 5 ? 0 : -1;
    if (rc == 0) rc = rawstor_object_pread(object, (uint8_t *)out, 5, 4096) == 5 ? 0 : -1;
    if (rc == 0) rc = rawstor_object_close(object);
    rawstor_free(instance);
    snprintf(command, sizeof command, "rm -rf %s", dir);
    if (system(command) != 0) return 1;
    if (rc != 0 || strcmp(out, "hello") != 0) {
        fprintf(stderr, "example failed: %s\n", rawstor_last_error());
        return 1;
    }
    printf("example: ok (%s)\n", rawstor_version());
    return 0;
}
