/*
 * The hello Worker in C (the same answer as examples/workers/hello): 200, content-type:
 * text/plain, x-worker: hello, body "hello from tenantry\n". Build with ./build.sh.
 */
#include "tenantry.h"

TENANTRY_FETCH {
    if (tenantry_header_set("content-type", "text/plain") < 0) return 1;
    if (tenantry_header_set("x-worker", "hello") < 0) return 1;
    if (tenantry_write_str("hello from tenantry\n") < 0) return 1;
    return 0;
}
