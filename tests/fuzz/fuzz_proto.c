/* Proves the wire decoders survive arbitrary input: any bytes as a Request, Response or Control body, or split into frames, either decode to a valid message that re-encodes to the same message or are rejected, with nothing leaked. Input: byte 0 picks the mode (0-2 body of request/response/control, 3 frames); frames mode: byte 1 = is_router (bit 0) + kind (bits 1-2), then frames as [len byte][bytes]. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Whether msg or any submessage kept unknown fields. protobuf-c accepts
 * some it cannot write back in a readable form (a field number 0 spelled
 * as a two-byte varint), so the re-encoding check skips those. */
static int has_unknown(const ProtobufCMessage *msg)
{
    if (msg->n_unknown_fields)
        return 1;
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        const char *base = (const char *)msg;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            ProtobufCMessage *const *v = *(ProtobufCMessage *const *const *)(base + f->offset);
            for (size_t k = 0; k < n; k++)
                if (v[k] && has_unknown(v[k]))
                    return 1;
            continue;
        }
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t which = *(const uint32_t *)(base + f->quantifier_offset);
            if (which != f->id)
                continue;
        }
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)(base + f->offset);
        if (sub && has_unknown(sub))
            return 1;
    }
    return 0;
}

/* A decoded message must pack and decode again to the same bytes. */
static void repack(const ProtobufCMessage *msg, wire_kind kind)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *a = malloc(n ? n : 1);
    if (!a)
        abort();
    if (protobuf_c_message_pack(msg, a) != n)
        abort();
    pi_error err;
    ProtobufCMessage *again = NULL;
    int rc;
    if (kind == WIRE_REQUEST) {
        Pi__Request *r;
        rc = wire_decode_request(a, n, &r, &err);
        again = r ? &r->base : NULL;
    } else if (kind == WIRE_RESPONSE) {
        Pi__Response *r;
        rc = wire_decode_response(a, n, &r, &err);
        again = r ? &r->base : NULL;
    } else {
        Pi__Control *c;
        rc = wire_decode_control(a, n, &c, &err);
        again = c ? &c->base : NULL;
    }
    if (rc != WIRE_OK || !again)
        abort();
    size_t m = protobuf_c_message_get_packed_size(again);
    uint8_t *b = malloc(m ? m : 1);
    if (!b || m != n || protobuf_c_message_pack(again, b) != m || memcmp(a, b, n) != 0)
        abort();
    protobuf_c_message_free_unpacked(again, NULL);
    free(a);
    free(b);
}

static void body(const uint8_t *p, size_t n, wire_kind kind)
{
    pi_error err;
    ProtobufCMessage *msg = NULL;
    int rc;
    if (kind == WIRE_REQUEST) {
        Pi__Request *r;
        rc = wire_decode_request(p, n, &r, &err);
        msg = r ? &r->base : NULL;
    } else if (kind == WIRE_RESPONSE) {
        Pi__Response *r;
        rc = wire_decode_response(p, n, &r, &err);
        msg = r ? &r->base : NULL;
    } else {
        Pi__Control *c;
        rc = wire_decode_control(p, n, &c, &err);
        msg = c ? &c->base : NULL;
    }
    if (rc != WIRE_OK && rc != WIRE_BAD)
        abort();
    if (rc == WIRE_OK && !has_unknown(msg))
        repack(msg, kind);
    if (msg)
        protobuf_c_message_free_unpacked(msg, NULL);
}

static void frames(const uint8_t *p, size_t n)
{
    if (n < 1)
        return;
    int is_router = p[0] & 1;
    wire_kind kind = (wire_kind)((p[0] >> 1) % 3);
    p++;
    n--;
    wire_frame f[8];
    size_t nf = 0;
    while (n > 0 && nf < 8) {
        size_t len = p[0];
        p++;
        n--;
        if (len > n)
            len = n;
        f[nf].data = p;
        f[nf].len = len;
        nf++;
        p += len;
        n -= len;
    }
    wire_msg m;
    pi_error err;
    int rc = wire_decode_frames(f, nf, is_router, kind, &m, &err);
    if (rc != WIRE_OK && rc != WIRE_BAD && rc != WIRE_VERSION)
        abort();
    if (rc == WIRE_OK && !m.request && !m.response && !m.control)
        abort();
    if (rc != WIRE_OK && (m.request || m.response || m.control))
        abort();
    wire_msg_clear(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] % 4) {
    case 0: body(data + 1, size - 1, WIRE_REQUEST); break;
    case 1: body(data + 1, size - 1, WIRE_RESPONSE); break;
    case 2: body(data + 1, size - 1, WIRE_CONTROL); break;
    default: frames(data + 1, size - 1); break;
    }
    return 0;
}
