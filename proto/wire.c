#include "wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* Frames kept per message; a message with more is drained and rejected. */
#define WIRE_KEEP_FRAMES 4

const char *wire_header(wire_kind kind)
{
    return kind == WIRE_CONTROL ? WIRE_CTL_HEADER : WIRE_RPC_HEADER;
}

static const char *kind_name(wire_kind kind)
{
    switch (kind) {
    case WIRE_REQUEST: return "pi.Request";
    case WIRE_RESPONSE: return "pi.Response";
    case WIRE_CONTROL: return "pi.Control";
    }
    return "?";
}

static int send_frame(void *sock, const void *data, size_t len, int flags, pi_error *err)
{
    for (;;) {
        if (zmq_send(sock, data, len, flags) >= 0)
            return 0;
        if (errno != EINTR)
            return pi_error_set(err, "zmq_send: %s", zmq_strerror(errno));
    }
}

int wire_send(void *sock, const char *routing_id, size_t id_len, const char *header,
              const ProtobufCMessage *msg, pi_error *err)
{
    size_t size = protobuf_c_message_get_packed_size(msg);
    if (size > WIRE_MAX_BODY)
        return pi_error_set(err, "%s message of %zu bytes exceeds the %u-byte limit",
                            msg->descriptor->name, size, WIRE_MAX_BODY);
    if (routing_id && (id_len == 0 || id_len > WIRE_MAX_ROUTING_ID))
        return pi_error_set(err, "routing id of %zu bytes: must be 1..%d", id_len,
                            WIRE_MAX_ROUTING_ID);
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return pi_error_set(err, "out of memory packing a %zu-byte %s", size,
                            msg->descriptor->name);
    size_t packed = protobuf_c_message_pack(msg, buf);
    int rc = -1;
    if (packed != size) {
        pi_error_set(err, "%s packed to %zu bytes, expected %zu", msg->descriptor->name,
                     packed, size);
        goto out;
    }
    if (routing_id && send_frame(sock, routing_id, id_len, ZMQ_SNDMORE, err) < 0)
        goto out;
    if (send_frame(sock, header, strlen(header), ZMQ_SNDMORE, err) < 0)
        goto out;
    if (send_frame(sock, buf, size, 0, err) < 0)
        goto out;
    rc = 0;
out:
    free(buf);
    return rc;
}

int wire_send_error(void *sock, const char *routing_id, size_t id_len, wire_kind kind,
                    uint64_t id, Pi__Error__Code code, const char *message, pi_error *err)
{
    Pi__Error e = PI__ERROR__INIT;
    e.code = code;
    e.message = (char *)(message ? message : "");
    if (kind == WIRE_CONTROL) {
        Pi__Control c = PI__CONTROL__INIT;
        c.kind_case = PI__CONTROL__KIND_ERROR;
        c.error = &e;
        return wire_send(sock, routing_id, id_len, WIRE_CTL_HEADER, &c.base, err);
    }
    Pi__Response r = PI__RESPONSE__INIT;
    r.id = id;
    r.kind_case = PI__RESPONSE__KIND_ERROR;
    r.error = &e;
    return wire_send(sock, routing_id, id_len, WIRE_RPC_HEADER, &r.base, err);
}

/* The oneof must name a kind this build knows, and its message must be
 * present (protobuf-c leaves a newer peer's kinds as unknown fields). */
static int request_valid(const Pi__Request *r)
{
    switch (r->kind_case) {
    case PI__REQUEST__KIND_GENERATE: return r->generate != NULL;
    case PI__REQUEST__KIND_TOKENIZE: return r->tokenize != NULL;
    case PI__REQUEST__KIND_DETOKENIZE: return r->detokenize != NULL;
    case PI__REQUEST__KIND_STATUS: return r->status != NULL;
    case PI__REQUEST__KIND_RESTART_WORKER: return r->restart_worker != NULL;
    case PI__REQUEST__KIND_SHUTDOWN: return r->shutdown != NULL;
    case PI__REQUEST__KIND_CANCEL: return r->cancel != NULL;
    default: return 0;
    }
}

static int response_valid(const Pi__Response *r)
{
    switch (r->kind_case) {
    case PI__RESPONSE__KIND_CHUNK: return r->chunk != NULL;
    case PI__RESPONSE__KIND_DONE: return r->done != NULL;
    case PI__RESPONSE__KIND_TOKENIZE: return r->tokenize != NULL;
    case PI__RESPONSE__KIND_DETOKENIZE: return r->detokenize != NULL;
    case PI__RESPONSE__KIND_STATUS: return r->status != NULL;
    case PI__RESPONSE__KIND_RESTART_WORKER: return r->restart_worker != NULL;
    case PI__RESPONSE__KIND_SHUTDOWN: return r->shutdown != NULL;
    case PI__RESPONSE__KIND_CANCEL: return r->cancel != NULL;
    case PI__RESPONSE__KIND_ERROR: return r->error != NULL;
    default: return 0;
    }
}

static int control_valid(const Pi__Control *c)
{
    switch (c->kind_case) {
    case PI__CONTROL__KIND_HELLO: return c->hello != NULL;
    case PI__CONTROL__KIND_READY: return c->ready != NULL;
    case PI__CONTROL__KIND_STEP: return c->step != NULL;
    case PI__CONTROL__KIND_STEP_DONE: return c->step_done != NULL;
    case PI__CONTROL__KIND_HEARTBEAT: return c->heartbeat != NULL;
    case PI__CONTROL__KIND_QUIT: return c->quit != NULL;
    case PI__CONTROL__KIND_ERROR: return c->error != NULL;
    default: return 0;
    }
}

static int body_size_ok(size_t len, const char *what, pi_error *err)
{
    if (len > WIRE_MAX_BODY)
        return pi_error_set(err, "%s body of %zu bytes exceeds the %u-byte limit", what, len,
                            WIRE_MAX_BODY);
    return 0;
}

int wire_decode_request(const void *buf, size_t len, Pi__Request **out, pi_error *err)
{
    *out = NULL;
    if (body_size_ok(len, "pi.Request", err) < 0)
        return WIRE_BAD;
    Pi__Request *r = pi__request__unpack(NULL, len, buf);
    if (!r) {
        pi_error_set(err, "body is not a valid pi.Request protobuf (%zu bytes)", len);
        return WIRE_BAD;
    }
    *out = r;
    if (!request_valid(r)) {
        pi_error_set(err, "request %llu names no kind this pid knows (oneof case %d)",
                     (unsigned long long)r->id, (int)r->kind_case);
        return WIRE_BAD;
    }
    return WIRE_OK;
}

int wire_decode_response(const void *buf, size_t len, Pi__Response **out, pi_error *err)
{
    *out = NULL;
    if (body_size_ok(len, "pi.Response", err) < 0)
        return WIRE_BAD;
    Pi__Response *r = pi__response__unpack(NULL, len, buf);
    if (!r) {
        pi_error_set(err, "body is not a valid pi.Response protobuf (%zu bytes)", len);
        return WIRE_BAD;
    }
    *out = r;
    if (!response_valid(r)) {
        pi_error_set(err, "response %llu names no kind this client knows (oneof case %d)",
                     (unsigned long long)r->id, (int)r->kind_case);
        return WIRE_BAD;
    }
    return WIRE_OK;
}

int wire_decode_control(const void *buf, size_t len, Pi__Control **out, pi_error *err)
{
    *out = NULL;
    if (body_size_ok(len, "pi.Control", err) < 0)
        return WIRE_BAD;
    Pi__Control *c = pi__control__unpack(NULL, len, buf);
    if (!c) {
        pi_error_set(err, "body is not a valid pi.Control protobuf (%zu bytes)", len);
        return WIRE_BAD;
    }
    *out = c;
    if (!control_valid(c)) {
        pi_error_set(err, "control message names no kind this build knows (oneof case %d)",
                     (int)c->kind_case);
        return WIRE_BAD;
    }
    return WIRE_OK;
}

/* Copies a header frame for messages: printable ASCII kept, the rest '?'. */
static void copy_header(char *dst, const unsigned char *src, size_t len)
{
    if (len > WIRE_MAX_HEADER)
        len = WIRE_MAX_HEADER;
    for (size_t i = 0; i < len; i++)
        dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? (char)src[i] : '?';
    dst[len] = '\0';
}

/* n_total counts every frame received; only the first n_avail are given. */
static int decode(const wire_frame *frames, size_t n_avail, size_t n_total, int is_router,
                  wire_kind kind, wire_msg *out, pi_error *err)
{
    size_t h = is_router ? 1 : 0;
    size_t want = h + 2;
    if (is_router && n_avail >= 1) {
        if (frames[0].len == 0 || frames[0].len > WIRE_MAX_ROUTING_ID) {
            pi_error_set(err, "routing id of %zu bytes: must be 1..%d", frames[0].len,
                         WIRE_MAX_ROUTING_ID);
            return WIRE_BAD;
        }
        memcpy(out->routing_id, frames[0].data, frames[0].len);
        out->routing_id_len = frames[0].len;
    }
    if (n_avail <= h) {
        pi_error_set(err, "message of %zu frame(s) has no header frame; expected %zu frames",
                     n_total, want);
        return WIRE_BAD;
    }
    const wire_frame *hf = &frames[h];
    const char *expect = wire_header(kind);
    size_t elen = strlen(expect);
    copy_header(out->header, hf->data, hf->len);
    if (hf->len != elen || memcmp(hf->data, expect, elen) != 0) {
        if (hf->len >= 2 && hf->len <= WIRE_MAX_HEADER && !memcmp(hf->data, "PI", 2)) {
            pi_error_set(err, "peer speaks protocol %s; this side speaks %s: use matching "
                              "pi versions", out->header, expect);
            return WIRE_VERSION;
        }
        pi_error_set(err, "not a pi message: header frame '%s' (%zu bytes), expected '%s'",
                     out->header, hf->len, expect);
        return WIRE_BAD;
    }
    if (n_total != want) {
        pi_error_set(err, "%s message of %zu frames; expected %zu ([routing id,] header, "
                          "body)", expect, n_total, want);
        return WIRE_BAD;
    }
    const wire_frame *body = &frames[h + 1];
    int rc;
    switch (kind) {
    case WIRE_REQUEST:
        rc = wire_decode_request(body->data, body->len, &out->request, err);
        if (out->request)
            out->id = out->request->id;
        break;
    case WIRE_RESPONSE:
        rc = wire_decode_response(body->data, body->len, &out->response, err);
        if (out->response)
            out->id = out->response->id;
        break;
    case WIRE_CONTROL:
        rc = wire_decode_control(body->data, body->len, &out->control, err);
        break;
    default:
        return pi_error_set(err, "wire_decode: unknown kind %d", (int)kind);
    }
    if (rc != WIRE_OK) {
        /* Keep only what the caller needs to answer: routing id and id. */
        uint64_t id = out->id;
        char rid[WIRE_MAX_ROUTING_ID];
        size_t rid_len = out->routing_id_len;
        char hdr[sizeof out->header];
        memcpy(rid, out->routing_id, rid_len);
        memcpy(hdr, out->header, sizeof hdr);
        wire_msg_clear(out);
        out->id = id;
        memcpy(out->routing_id, rid, rid_len);
        out->routing_id_len = rid_len;
        memcpy(out->header, hdr, sizeof hdr);
    }
    return rc;
}

int wire_decode_frames(const wire_frame *frames, size_t n_frames, int is_router,
                       wire_kind kind, wire_msg *out, pi_error *err)
{
    memset(out, 0, sizeof *out);
    return decode(frames, n_frames, n_frames, is_router, kind, out, err);
}

int wire_recv(void *sock, int is_router, wire_kind kind, wire_msg *out, pi_error *err)
{
    memset(out, 0, sizeof *out);
    zmq_msg_t parts[WIRE_KEEP_FRAMES];
    size_t kept = 0, total = 0;
    int more = 1, rc = WIRE_OK;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sock, 0) < 0) {
            int e = errno;
            zmq_msg_close(&m);
            /* Frames of one message arrive together, so only the first
             * recv may time out; a signal mid-message just retries. */
            if (e == EINTR && total > 0)
                continue;
            if (total == 0 && (e == EAGAIN || e == EINTR)) {
                rc = WIRE_AGAIN;
                pi_error_set(err, "no message yet");
            } else {
                rc = pi_error_set(err, "zmq_msg_recv %s: %s", kind_name(kind),
                                  zmq_strerror(e));
            }
            goto out;
        }
        more = zmq_msg_more(&m);
        total++;
        if (kept < WIRE_KEEP_FRAMES)
            parts[kept++] = m;
        else
            zmq_msg_close(&m);
    }
    wire_frame frames[WIRE_KEEP_FRAMES];
    for (size_t i = 0; i < kept; i++) {
        frames[i].data = zmq_msg_data(&parts[i]);
        frames[i].len = zmq_msg_size(&parts[i]);
    }
    rc = decode(frames, kept, total, is_router, kind, out, err);
out:
    for (size_t i = 0; i < kept; i++)
        zmq_msg_close(&parts[i]);
    return rc;
}

void wire_msg_clear(wire_msg *m)
{
    if (m->request)
        pi__request__free_unpacked(m->request, NULL);
    if (m->response)
        pi__response__free_unpacked(m->response, NULL);
    if (m->control)
        pi__control__free_unpacked(m->control, NULL);
    memset(m, 0, sizeof *m);
}

int wire_socket_defaults(void *sock, pi_error *err)
{
    int linger = 0;
    int64_t max = 4 * (int64_t)WIRE_MAX_BODY;
    if (zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &max, sizeof max) != 0)
        return pi_error_set(err, "zmq_setsockopt: %s", zmq_strerror(errno));
    return 0;
}

const char *wire_request_name(const Pi__Request *r)
{
    switch (r->kind_case) {
    case PI__REQUEST__KIND_GENERATE: return "generate";
    case PI__REQUEST__KIND_TOKENIZE: return "tokenize";
    case PI__REQUEST__KIND_DETOKENIZE: return "detokenize";
    case PI__REQUEST__KIND_STATUS: return "status";
    case PI__REQUEST__KIND_RESTART_WORKER: return "restart_worker";
    case PI__REQUEST__KIND_SHUTDOWN: return "shutdown";
    case PI__REQUEST__KIND_CANCEL: return "cancel";
    default: return "?";
    }
}

const char *wire_error_code_name(int code)
{
    switch (code) {
    case PI__ERROR__CODE__UNKNOWN: return "UNKNOWN";
    case PI__ERROR__CODE__BAD_REQUEST: return "BAD_REQUEST";
    case PI__ERROR__CODE__VERSION: return "VERSION";
    case PI__ERROR__CODE__UNAVAILABLE: return "UNAVAILABLE";
    case PI__ERROR__CODE__WORKER_FAILED: return "WORKER_FAILED";
    case PI__ERROR__CODE__TOO_LONG: return "TOO_LONG";
    case PI__ERROR__CODE__INTERNAL: return "INTERNAL";
    case PI__ERROR__CODE__UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "?";
    }
}
