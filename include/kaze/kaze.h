/*
 * kaze/kaze.h — everything libkaze offers, in one include.
 *
 * The layers, bottom up:
 *   kaze/common.h     errors, allocator, small value types
 *   kaze/utf8.h       incremental UTF-8 validation
 *   kaze/frame.h      RFC 6455 framing: parser, writer, masking, close codes
 *   kaze/handshake.h  the opening handshake, both roles
 *   kaze/deflate.h    permessage-deflate (RFC 7692): negotiation, compression
 *   kaze/loop.h       the event loop: io watchers, timers, defers, async, signals
 *   kaze/tcp.h        non-blocking TCP listen, accept, connect
 *   kaze/server.h     the WebSocket server on a loop
 *   kaze/client.h     the client role's pieces without I/O: URLs, backoff, proxies
 */
#ifndef KAZE_KAZE_H
#define KAZE_KAZE_H

#include "kaze/common.h"
#include "kaze/utf8.h"
#include "kaze/frame.h"
#include "kaze/handshake.h"
#include "kaze/deflate.h"
#include "kaze/loop.h"
#include "kaze/tcp.h"
#include "kaze/server.h"
#include "kaze/tls.h"
#include "kaze/client.h"

#endif
