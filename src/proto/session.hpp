// Sans-I/O WebSocket session (RFC 6455 after the handshake): bytes in -> events
// out, calls in -> bytes out. Never touches a socket, a timer or a thread.
// Not thread-safe: one owner (the connection's loop thread) drives it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "proto/buffer.hpp"
#include "proto/frame.hpp"
#include "proto/utf8.hpp"

namespace wscore::proto {

struct SessionConfig {
  Role role = Role::server;
  bool auto_pong = true;                  // answer pings with pongs inside
  // Hold our close frame back until commit_close(): the close of a protocol
  // error, and the answer to the peer's close. Replies to messages delivered
  // before it can then still go out first (a pull API whose application has
  // not read them yet: an echo or request/response server answers everything
  // it was sent before the close). Input after the error or the peer's close
  // is ignored either way; the caller bounds the hold with a timer.
  bool defer_close = false;
  // Streaming: data messages are not joined. Each run of payload bytes that
  // arrived is an event of its own (EventType::part) as soon as it is here,
  // borrowed from the caller's buffer; a whole single-frame message lying in
  // the buffer is still one EventType::message. Limits and UTF-8 apply to the
  // message as a whole, checked as the bytes pass (a part may end inside a
  // UTF-8 sequence; invalid text fails the connection after earlier parts).
  bool stream = false;
  uint64_t max_message_size = 16u << 20;  // joined message; beyond -> close 1009
};

enum class EventType : uint8_t {
  none,     // nothing complete yet: feed more bytes
  message,  // a complete text/binary message (fragments joined)
  part,     // stream: the next payload bytes of a text/binary message (first/fin say where)
  ping,     // a ping arrived (already answered when auto_pong)
  pong,     // a pong arrived
  close,    // the close handshake finished on the receive side, or the
            // connection was failed by a protocol error (then `failed` is true)
};

struct Event {
  EventType type = EventType::none;
  bool is_text = false;          // message: text (validated UTF-8) or binary
  bool failed = false;           // close: we failed the connection (code says why)
  bool first = false;            // part: the message's first bytes
  bool fin = false;              // part: its last (the message is complete)
  const uint8_t* data = nullptr; // message/ping/pong payload; BORROWED: valid
  size_t size = 0;               //   until the next call of receive() or any send
  uint16_t close_code = 0;       // close: the peer's code (1005 if none) or, when
  std::string_view close_reason; //   failed, the code we sent (1002/1007/1009)
};

enum class State : uint8_t { open, closing, closed };

// Whether the caller validated a text payload already (then it is not checked twice).
enum class Utf8Checked : bool { no, yes };

// Send-side results (mapped to WS_E* by the API layer).
enum class SendResult : uint8_t {
  ok,
  bad_utf8,       // text payload not valid UTF-8 (fragments: not a valid prefix / not complete at fin)
  bad_state,      // close already sent, or fragment sequence misuse (type change, data frame mid-message)
  too_big,        // control payload > 125, close reason > 123
  bad_close_code, // not sendable (e.g. 1005, 1006, 1015, <1000, 1004, 1016-2999, >=5000)
};

// Close codes this library lets an application send (0: a close without a code).
bool sendable_close_code(uint16_t code);

class Session {
 public:
  explicit Session(const SessionConfig& cfg);

  // ---- receive side ----
  // Parses bytes from `data` until one event is complete or the input is used
  // up; returns the number of bytes consumed and fills `ev` (type none when no
  // event completed). The caller loops until all input is consumed, handling each
  // event before the next call. `data` may be modified in place (unmasking), so
  // a complete single-frame message lying whole in `data` is delivered with no
  // copy (ev.data points into `data`). Partial frames are kept internally, so
  // the caller may reuse its buffer after the call.
  // After a protocol error the session appends a close frame (1002/1007/1009) to
  // the output, sets state closed, returns ev.type == close with failed = true;
  // further input is ignored (returns len, no event). Reception after a received
  // close frame is ignored likewise.
  size_t receive(uint8_t* data, size_t len, Event& ev) {
    // Inline, the common case: a whole single-frame text or binary message
    // with a 7- or 16-bit length, no RSV bits, masked as the role requires,
    // and no message in progress. Decoded from its bytes directly and
    // delivered in place; anything else takes the general path, which gives
    // the same result for these frames (fuzz_session checks that).
    if (state_ != State::closed && !close_received_ && !in_payload_ && dec_.idle() &&
        rx_msg_op_ == Opcode::continuation && len >= 2) {
      const uint8_t b0 = data[0], b1 = data[1];
      const uint8_t want_mask = cfg_.role == Role::server ? 0x80 : 0;
      if ((b0 == 0x81 || b0 == 0x82) && (b1 & 0x80) == want_mask && (b1 & 0x7F) != 127) {
        size_t n = b1 & 0x7F, at = 2;
        if (n == 126) {
          n = len >= 4 ? (size_t(data[2]) << 8) | data[3] : SIZE_MAX;
          at = 4;
        }
        const size_t payload = at + (want_mask ? 4 : 0);
        if (n != SIZE_MAX && len >= payload && len - payload >= n && n <= cfg_.max_message_size) {
          uint8_t* p = data + payload;
          if (want_mask) mask_bytes(p, n, data + at, 0);
          ev = Event{};
          const bool text = b0 == 0x81;
          if (text && !whole_text_ok(p, n, ev)) return len;
          if (!msg_.empty()) drop_joined();  // an earlier joined message's bytes
          ev.type = EventType::message;
          ev.is_text = text;
          ev.data = p;
          ev.size = n;
          return payload + n;
        }
      }
    }
    return receive_general(data, len, ev);
  }

  // Large payloads straight from the socket. While a data frame's payload is
  // arriving and at least `min` bytes of it are still to come: where its next
  // bytes go in the message being assembled, and (*room) how many may go
  // there, never past the frame's end. The caller reads at most that many
  // bytes there and hands them over with receive_in_place(). nullptr when it
  // should read into a buffer of its own and call receive() instead. Any other
  // call on the session in between voids the window.
  uint8_t* payload_window(size_t min, size_t* room);
  // n (<= *room) bytes were written at the window: unmasked, validated and
  // taken exactly as receive() takes them, with the event (if any) it would
  // give. Returns n.
  size_t receive_in_place(size_t n, Event& ev);
  // Payload bytes of the current data frame still to come (0 between frames).
  uint64_t data_payload_pending() const {
    return in_payload_ && !is_control(dec_.header().opcode) ? remaining_ : 0;
  }

  // ---- send side: each call appends encoded frames to the output buffer ----
  // A whole message (opcode text or binary).
  // Text is validated unless the caller says it did that (Utf8Checked::yes).
  SendResult send_message(Opcode op, const uint8_t* data, size_t len, Utf8Checked checked = Utf8Checked::no) {
    // Inline, the echo/broadcast case: a server's small message already
    // checked by the caller goes into the output with a 2-byte header.
    if (cfg_.role == Role::server && len < 126 && checked == Utf8Checked::yes && !close_sent_ &&
        tx_msg_op_ == Opcode::continuation && (op == Opcode::text || op == Opcode::binary)) {
      uint8_t* at = out_.extend(2 + len);
      at[0] = static_cast<uint8_t>(0x80 | static_cast<uint8_t>(op));
      at[1] = static_cast<uint8_t>(len);
      if (len) std::memcpy(at + 2, data, len);
      return SendResult::ok;
    }
    return send_message_general(op, data, len, checked);
  }
  // Role::server only (its frames are not masked): like send_message, but only
  // the frame header goes to the output; the caller writes `data` itself right
  // after all of the output, before anything is sent again. Spares a copy of
  // a large payload. bad_state for a client session.
  SendResult send_message_by_reference(Opcode op, const uint8_t* data, size_t len,
                                       Utf8Checked checked = Utf8Checked::no);
  // One fragment; op is text/binary for every fragment of a message (the session
  // emits continuation opcodes itself). fin ends the message.
  SendResult send_fragment(Opcode op, const uint8_t* data, size_t len, bool fin,
                           Utf8Checked checked = Utf8Checked::no);
  // Role::server only: send_fragment with only the header going to the
  // output (the caller writes `data` after it, as for send_message_by_reference).
  SendResult send_fragment_by_reference(Opcode op, const uint8_t* data, size_t len, bool fin,
                                        Utf8Checked checked = Utf8Checked::no);
  SendResult send_ping(const uint8_t* data, size_t len);
  SendResult send_pong(const uint8_t* data, size_t len);
  // code 0: a close frame without payload. Moves open -> closing (or, when the
  // peer's close was already received, -> closed).
  // With a deferred failure pending (defer_close), sends that failure's close
  // frame instead (as commit_close()) and returns ok; the state stays closed.
  // With the answer to the peer's close pending, this close is the answer.
  SendResult send_close(uint16_t code, std::string_view reason);

  // ---- output ----
  // Bytes to write to the peer, in order. consume_output(n) after n were written.
  const uint8_t* output_data() const { return out_.data() + out_pos_; }
  size_t output_size() const { return out_.size() - out_pos_; }
  void consume_output(size_t n);

  // ---- state ----
  State state() const { return state_; }
  bool close_sent() const { return close_sent_; }
  bool close_received() const { return close_received_; }
  // True once the transport should close TCP after flushing the output: we
  // received and answered a close (server closes first per RFC 6455 7.1.1), or
  // we failed the connection. A client that sent and received close also gets
  // true: it may wait briefly for the server's FIN, which is the transport's call.
  bool should_close_transport() const { return should_close_; }
  // defer_close: a close frame is waiting for commit_close(): the code of a
  // protocol error (1002/1007/1009), or the peer's code that the answer will
  // echo (1005 when it had none); 0 when none waits.
  uint16_t pending_close() const { return pending_failure_ ? pending_failure_ : reply_pending_ ? peer_code_ : 0; }
  // Sends the held-back close frame (the failure's, or the answer to the peer's).
  void commit_close();
  // The block of the message event just returned, when it was assembled in
  // the session's buffer (ev.data == its start) and fills most of it: the
  // caller owns it (free() it; a NUL byte follows the payload), and the
  // session starts a fresh buffer. nullptr otherwise: copy ev.data then.
  uint8_t* take_message(const Event& ev);
  // Role::client only: mask keys come from a CSPRNG (OpenSSL RAND_bytes, buffered).

  // ---- rest ----
  // Nothing under way: no frame or message partly received or sent, no
  // output left, no close sent, received or held back. A session at rest
  // acts exactly as a new one with its configuration does, so its owner may
  // drop it between bursts and carry on with a new one, or with a pooled one
  // after reset(): an idle connection then holds no session at all.
  bool at_rest() const {
    return state_ == State::open && !close_sent_ && !close_received_ && !in_payload_ && dec_.idle() &&
           rx_msg_op_ == Opcode::continuation && tx_msg_op_ == Opcode::continuation && !parts_given_ &&
           out_pos_ == out_.size() && !reply_pending_ && pending_failure_ == 0;
  }
  // Back to the state of Session(cfg), from any state. Keeps the buffers'
  // memory (a reused session allocates nothing for its first messages).
  void reset(const SessionConfig& cfg);
  // Bytes of buffer memory the session holds (its output, message and
  // control buffers), for a pool that keeps only small ones.
  size_t held_bytes() const {
    return out_.capacity() + msg_.capacity() + (ctrl_ ? kMaxControlPayload : 0) + (masks_ ? sizeof(MaskSource) : 0);
  }

 private:
  SendResult send_message_general(Opcode op, const uint8_t* data, size_t len, Utf8Checked checked);
  size_t receive_general(uint8_t* data, size_t len, Event& ev);
  void drop_joined();
  Event fail_connection(uint16_t code, const char* why);
  bool whole_text_ok(const uint8_t* p, size_t n, Event& ev);
  SendResult check_message(Opcode op, const uint8_t* data, size_t len, Utf8Checked checked) const;
  bool frame_end(Event& ev);
  bool stream_part(uint8_t* p, size_t n, Event& ev);
  SendResult fragment(Opcode op, const uint8_t* data, size_t len, bool fin, Utf8Checked checked, bool header_only);
  void handle_control(Event& ev);
  void append_frame(Opcode op, bool fin, const uint8_t* data, size_t len, bool header_only = false);

  // Members by size, the one-byte and the small ones together, so that a
  // connection (which holds its session inline) carries no padding.
  SessionConfig cfg_;
  Buffer out_;
  size_t out_pos_ = 0;

  // Receive side.
  FrameDecoder dec_;
  uint64_t remaining_ = 0;      // payload bytes of the current frame still to come
  Buffer msg_;                  // assembly buffer for fragmented/partial messages
  uint64_t msg_size_ = 0;       // bytes of the current message so far
  // Control frame payload being assembled (kMaxControlPayload bytes, made at
  // the first control frame: most connections never get one).
  std::unique_ptr<uint8_t[]> ctrl_;
  std::string_view close_reason_;  // the peer's reason (in ctrl_), or why we failed (a literal)
  const char* fail_why_ = "";

  // Send side.
  std::unique_ptr<MaskSource> masks_;  // clients only (512 bytes of buffered randomness)

 public:
  // Why the session failed the connection ("" when it did not).
  const char* failure_reason() const { return fail_why_; }
  // The close code the peer sent (1005 none), valid once close_received().
  uint16_t peer_close_code() const { return peer_code_; }
  std::string_view peer_close_reason() const { return close_reason_; }

 private:
  Utf8Validator rx_utf8_;
  Utf8Validator tx_utf8_;
  uint16_t peer_code_ = 0;
  uint16_t pending_failure_ = 0;
  uint8_t ctrl_len_ = 0;        // bytes of ctrl_ so far (at most kMaxControlPayload, 125)
  uint8_t mask_off_ = 0;        // key offset (0..3) for the next payload byte
  State state_ = State::open;
  bool close_sent_ = false;
  bool close_received_ = false;
  bool should_close_ = false;
  bool in_payload_ = false;     // header parsed, payload bytes pending
  Opcode rx_msg_op_ = Opcode::continuation;  // text/binary while a message is in progress
  bool parts_given_ = false;    // stream: a part of the current message went out
  Opcode tx_msg_op_ = Opcode::continuation;  // text/binary while sending fragments
  bool reply_pending_ = false;  // the answer to the peer's close waits (defer_close)
  void append_close_reply();
};

}  // namespace wscore::proto
