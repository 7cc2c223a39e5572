/* wire: pi's framing over ZeroMQ (docs/protocol.md). A message is
 * [routing id] (ROUTER side only) + header frame ("PIRPC01"/"PICTL01") +
 * one protobuf body frame. Receiving always drains every frame of a message,
 * so a malformed message never desynchronises the next one. */
#ifndef PI_WIRE_H
#define PI_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "pi.pb-c.h"
#include "pi_error.h"

#define WIRE_RPC_HEADER "PIRPC01"   /* clients <-> pid: Request / Response */
#define WIRE_CTL_HEADER "PICTL01"   /* pid <-> workers: Control */
#define WIRE_MAX_BODY (16u << 20)   /* larger bodies are refused without unpacking */
#define WIRE_MAX_ROUTING_ID 255     /* ZeroMQ's own limit */
#define WIRE_MAX_HEADER 32          /* a longer header frame is not a pi header */

/* What a body frame holds: RPC requests (pid reads), RPC responses (clients
 * read), or control messages (both sides of pid <-> workers). */
typedef enum wire_kind { WIRE_REQUEST, WIRE_RESPONSE, WIRE_CONTROL } wire_kind;

/* Return codes of wire_recv / wire_decode_*. */
enum {
    WIRE_OK = 0,
    WIRE_ERR = -1,      /* socket failure: err says what */
    WIRE_BAD = -2,      /* malformed: frame count, size, protobuf, unset oneof.
                           Answer Error{BAD_REQUEST} (id = msg.id, 0 if unknown) */
    WIRE_VERSION = -3,  /* another "PI..." header (msg.header holds it): answer
                           Error{VERSION} with our own header */
    WIRE_AGAIN = -4,    /* nothing arrived (ZMQ_RCVTIMEO, EAGAIN, EINTR) */
};

/* One received message. routing_id is set (ROUTER side) even when the
 * message is rejected, so the caller can answer the sender. Exactly one of
 * request/response/control is non-NULL after WIRE_OK; free with
 * wire_msg_clear. */
typedef struct wire_msg {
    char routing_id[WIRE_MAX_ROUTING_ID];
    size_t routing_id_len;
    char header[WIRE_MAX_HEADER + 1];  /* the header received, NUL-terminated */
    uint64_t id;                       /* Request/Response id; 0 when unknown */
    Pi__Request *request;
    Pi__Response *response;
    Pi__Control *control;
} wire_msg;

/* A frame as bytes, for the socket-free decoder. */
typedef struct wire_frame {
    const void *data;
    size_t len;
} wire_frame;

/* The header that goes with a kind: WIRE_RPC_HEADER or WIRE_CTL_HEADER. */
const char *wire_header(wire_kind kind);

/* Packs msg and sends [routing id] + header + body (routing_id NULL on a
 * DEALER). Retries EINTR. 0, or -1 with err. */
int wire_send(void *sock, const char *routing_id, size_t id_len, const char *header,
              const ProtobufCMessage *msg, pi_error *err);

/* Sends Response{id, error{code, message}} (header PIRPC01), or for
 * kind WIRE_CONTROL a Control{error} (header PICTL01). */
int wire_send_error(void *sock, const char *routing_id, size_t id_len, wire_kind kind,
                    uint64_t id, Pi__Error__Code code, const char *message, pi_error *err);

/* Receives one whole message (blocking per the socket's ZMQ_RCVTIMEO;
 * poll first to wait on several sockets) and decodes it as kind. Returns
 * WIRE_OK, WIRE_AGAIN, WIRE_BAD / WIRE_VERSION (err says why; the message
 * was drained) or WIRE_ERR. out is cleared first. */
int wire_recv(void *sock, int is_router, wire_kind kind, wire_msg *out, pi_error *err);

/* The checks of wire_recv on frames already received: frame count
 * (3 on a ROUTER, 2 otherwise), routing id, header, body size, protobuf,
 * oneof. Never reads beyond the given lengths. */
int wire_decode_frames(const wire_frame *frames, size_t n_frames, int is_router,
                       wire_kind kind, wire_msg *out, pi_error *err);

/* Body-only decoders (the fuzz targets): unpack + validate. On success *out
 * is owned by the caller (pi__request__free_unpacked / ...). */
int wire_decode_request(const void *buf, size_t len, Pi__Request **out, pi_error *err);
int wire_decode_response(const void *buf, size_t len, Pi__Response **out, pi_error *err);
int wire_decode_control(const void *buf, size_t len, Pi__Control **out, pi_error *err);

/* Frees the unpacked message and zeroes *m. */
void wire_msg_clear(wire_msg *m);

/* Socket options every pi socket wants: linger 0 and a transport-level
 * message size cap (4 x WIRE_MAX_BODY: a peer that sends more is cut off). */
int wire_socket_defaults(void *sock, pi_error *err);

/* Names for messages: "generate", "BAD_REQUEST", ... ("?" if unknown). */
const char *wire_request_name(const Pi__Request *r);
const char *wire_error_code_name(int code);

#endif
