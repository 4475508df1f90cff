/*
 * tenantry.h — write Tenantry user Workers in C: the guest side of the `tenantry:worker/v1` ABI
 * (docs/worker-abi.md). One header, no library.
 *
 * A Worker exports `memory` and `int32_t tenantry_fetch(void)` (0 = response complete, anything
 * else = failure, the client gets 500). TENANTRY_FETCH declares the export:
 *
 *     #include "tenantry.h"
 *
 *     TENANTRY_FETCH {
 *         tenantry_header_set("content-type", "text/plain");
 *         tenantry_write_str("hello from C\n");
 *         return 0;
 *     }
 *
 * Build with clang (Debian 12: `apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32`;
 * clang 14 spells the target `wasm32-wasi`, clang >= 18 also accepts `wasm32-wasip1`):
 *
 *   With wasi-libc (a WASI reactor: `_initialize` runs the C constructors once per instance):
 *     clang --target=wasm32-wasi -O2 -mexec-model=reactor -o hello.wasm hello.c
 *
 *   Freestanding (no libc at all; only the compiler's own headers such as <stdint.h>):
 *     clang --target=wasm32 -O2 -ffreestanding -nostdlib -Wl,--no-entry \
 *           -Wl,--export=tenantry_fetch -o hello.wasm hello.c
 *
 * `-Wl,--export=tenantry_fetch` is redundant with TENANTRY_FETCH (which sets `export_name`) but
 * harmless. Check the result with `wasm-objdump -x -j Import -j Export hello.wasm`: imports only
 * from "tenantry:worker/v1" and "wasi_snapshot_preview1", exports `memory` and `tenantry_fetch`.
 *
 * Every host call returns int32_t: >= 0 is success (usually a length), < 0 is a TENANTRY_E* code.
 * Buffer-returning calls return the value's FULL length n and write it only if n <= out_cap; if
 * n > out_cap nothing is written and you may call again with n bytes (tenantry_fits() tells).
 */
#ifndef TENANTRY_H
#define TENANTRY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Error codes (negative return values) ---------------------------------------------------- */
#define TENANTRY_ENOTFOUND   (-1) /* no such header / binding */
#define TENANTRY_EINVALID    (-2) /* malformed argument (header name/value, status, handle kind) */
#define TENANTRY_ELIMIT      (-3) /* a per-response limit would be exceeded */
#define TENANTRY_EBADHANDLE  (-4) /* no object with this handle */
#define TENANTRY_EUNSUPPORTED (-5) /* reserved for a later version / not allowed here */
#define TENANTRY_EWORKER_NOT_FOUND (-6) /* a fetch named a Worker that does not exist */
#define TENANTRY_EEXCEEDED    (-7) /* the called Worker exceeded its CPU, wall-clock or memory limit */

/* ---- Handles ----------------------------------------------------------------------------------- */
#define TENANTRY_REQUEST  0 /* the incoming request (read only) */
#define TENANTRY_RESPONSE 0 /* the response this invocation returns */

/* ---- Log levels and binding kinds ------------------------------------------------------------ */
#define TENANTRY_LOG_DEBUG 0
#define TENANTRY_LOG_INFO  1
#define TENANTRY_LOG_WARN  2
#define TENANTRY_LOG_ERROR 3

#define TENANTRY_KIND_PLAIN_TEXT  1
#define TENANTRY_KIND_JSON        2
#define TENANTRY_KIND_SECRET_TEXT 3
#define TENANTRY_KIND_SERVICE     4
#define TENANTRY_KIND_DISPATCH_NAMESPACE 5

/* ---- The entry point ------------------------------------------------------------------------- */
#define TENANTRY_FETCH \
    __attribute__((export_name("tenantry_fetch"))) int32_t tenantry_fetch(void)

/* ---- Raw imports ----------------------------------------------------------------------------- */
/* The C names carry a `tenantry_` prefix so that e.g. `log` cannot clash with libm's log(). */
#define TENANTRY_IMPORT(name) \
    __attribute__((import_module("tenantry:worker/v1"), import_name(name)))

/* Request (read). */
TENANTRY_IMPORT("request_method")
int32_t tenantry_request_method(int32_t req, uint8_t *out_ptr, size_t out_cap);
TENANTRY_IMPORT("request_url")
int32_t tenantry_request_url(int32_t req, uint8_t *out_ptr, size_t out_cap);
TENANTRY_IMPORT("request_header")
int32_t tenantry_request_header(int32_t req, const uint8_t *name_ptr, size_t name_len,
                                uint8_t *out_ptr, size_t out_cap);
TENANTRY_IMPORT("request_headers")
int32_t tenantry_request_headers(int32_t req, uint8_t *out_ptr, size_t out_cap);
/* Fills partially: returns the bytes written (at most out_cap), 0 at the end. Pass out_cap > 0. */
TENANTRY_IMPORT("request_body_read")
int32_t tenantry_request_body_read(int32_t req, uint8_t *out_ptr, size_t out_cap);

/* Response (write). */
TENANTRY_IMPORT("response_set_status")
int32_t tenantry_response_set_status(int32_t resp, int32_t status);
TENANTRY_IMPORT("response_header_set")
int32_t tenantry_response_header_set(int32_t resp, const uint8_t *name_ptr, size_t name_len,
                                     const uint8_t *val_ptr, size_t val_len);
TENANTRY_IMPORT("response_header_append")
int32_t tenantry_response_header_append(int32_t resp, const uint8_t *name_ptr, size_t name_len,
                                        const uint8_t *val_ptr, size_t val_len);
TENANTRY_IMPORT("response_body_write")
int32_t tenantry_response_body_write(int32_t resp, const uint8_t *ptr, size_t len);

/* Environment bindings. */
TENANTRY_IMPORT("env_get")
int32_t tenantry_env_get(const uint8_t *name_ptr, size_t name_len, uint8_t *out_ptr,
                         size_t out_cap);
TENANTRY_IMPORT("env_kind")
int32_t tenantry_env_kind(const uint8_t *name_ptr, size_t name_len);

/* Logging (the host truncates a line at 4 KiB). */
TENANTRY_IMPORT("log")
int32_t tenantry_log(int32_t level, const uint8_t *ptr, size_t len);

/* Requests to other Workers (docs/worker-abi.md, "Requests to other Workers"). Outgoing request
 * handles and fetched response handles start at 1. */
TENANTRY_IMPORT("request_new")
int32_t tenantry_request_new(void);
TENANTRY_IMPORT("request_clone")
int32_t tenantry_request_clone(int32_t req);
TENANTRY_IMPORT("request_set_method")
int32_t tenantry_request_set_method(int32_t req, const uint8_t *ptr, size_t len);
TENANTRY_IMPORT("request_set_url")
int32_t tenantry_request_set_url(int32_t req, const uint8_t *ptr, size_t len);
TENANTRY_IMPORT("request_header_set")
int32_t tenantry_request_header_set(int32_t req, const uint8_t *name_ptr, size_t name_len,
                                    const uint8_t *val_ptr, size_t val_len);
TENANTRY_IMPORT("request_header_remove")
int32_t tenantry_request_header_remove(int32_t req, const uint8_t *name_ptr, size_t name_len);
TENANTRY_IMPORT("request_body_write")
int32_t tenantry_request_body_write(int32_t req, const uint8_t *ptr, size_t len);
TENANTRY_IMPORT("service_fetch")
int32_t tenantry_service_fetch(const uint8_t *binding_ptr, size_t binding_len, int32_t req);
/* `opts`: empty, or cpu_ms, memory_mb, wall_ms, subrequests as little-endian uint32 (0 = the
 * script's own). */
TENANTRY_IMPORT("dispatch_fetch")
int32_t tenantry_dispatch_fetch(const uint8_t *binding_ptr, size_t binding_len,
                                const uint8_t *name_ptr, size_t name_len, const uint8_t *opts_ptr,
                                size_t opts_len, int32_t req);
TENANTRY_IMPORT("fetch_error")
int32_t tenantry_fetch_error(uint8_t *out_ptr, size_t out_cap);
TENANTRY_IMPORT("response_status")
int32_t tenantry_response_status(int32_t resp);
TENANTRY_IMPORT("response_header")
int32_t tenantry_response_header(int32_t resp, const uint8_t *name_ptr, size_t name_len,
                                 uint8_t *out_ptr, size_t out_cap);
TENANTRY_IMPORT("response_headers")
int32_t tenantry_response_headers(int32_t resp, uint8_t *out_ptr, size_t out_cap);
TENANTRY_IMPORT("response_body_read")
int32_t tenantry_response_body_read(int32_t resp, uint8_t *out_ptr, size_t out_cap);
TENANTRY_IMPORT("response_forward")
int32_t tenantry_response_forward(int32_t resp);

/* ---- Helpers for NUL-terminated strings (freestanding: no libc needed) --------------------- */

/* strlen without libc: `__builtin_strlen` on a non-constant string becomes a call to strlen(),
 * which a -nostdlib build cannot resolve. */
static inline size_t tenantry_strlen(const char *s) {
    size_t n = 0;
    while (s[n] != '\0') n++;
    return n;
}

/* 1 if a buffer-returning call's result `ret` fitted in `cap` bytes (and was written). */
static inline int tenantry_fits(int32_t ret, size_t cap) {
    return ret >= 0 && (size_t)ret <= cap;
}

static inline int32_t tenantry_status(int32_t status) {
    return tenantry_response_set_status(TENANTRY_RESPONSE, status);
}

static inline int32_t tenantry_header_set(const char *name, const char *value) {
    return tenantry_response_header_set(TENANTRY_RESPONSE, (const uint8_t *)name,
                                        tenantry_strlen(name), (const uint8_t *)value,
                                        tenantry_strlen(value));
}

static inline int32_t tenantry_header_append(const char *name, const char *value) {
    return tenantry_response_header_append(TENANTRY_RESPONSE, (const uint8_t *)name,
                                           tenantry_strlen(name), (const uint8_t *)value,
                                           tenantry_strlen(value));
}

static inline int32_t tenantry_write(const void *ptr, size_t len) {
    return tenantry_response_body_write(TENANTRY_RESPONSE, (const uint8_t *)ptr, len);
}

static inline int32_t tenantry_write_str(const char *s) {
    return tenantry_write(s, tenantry_strlen(s));
}

/* The request header `name` into `out` (cap bytes); returns the full length or an error. */
static inline int32_t tenantry_header_get(const char *name, char *out, size_t cap) {
    return tenantry_request_header(TENANTRY_REQUEST, (const uint8_t *)name,
                                   tenantry_strlen(name), (uint8_t *)out, cap);
}

/* The binding `name` into `out` (cap bytes); returns the full length or an error. */
static inline int32_t tenantry_env_get_str(const char *name, char *out, size_t cap) {
    return tenantry_env_get((const uint8_t *)name, tenantry_strlen(name), (uint8_t *)out, cap);
}

static inline void tenantry_log_str(int32_t level, const char *msg) {
    (void)tenantry_log(level, (const uint8_t *)msg, tenantry_strlen(msg));
}

#ifdef __cplusplus
}
#endif

#endif /* TENANTRY_H */
