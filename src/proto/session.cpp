#include "proto/session.hpp"

#include <algorithm>
#include <cstring>
#include <new>

namespace wscore::proto {

namespace {

// Close codes a peer may send (RFC 6455 7.4, IANA registry): anything else is
// a protocol error.
bool receivable_close_code(uint16_t c) {
  return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

constexpr size_t kMaxCloseReason = kMaxControlPayload - 2;

// Buffers keep their capacity between messages so that steady traffic never
// allocates, but one 16 MiB message must not pin 16 MiB for the life of an
// otherwise idle connection (thousands of them per process).
constexpr size_t kRetainedCapacity = 1u << 20;

// A data frame's announced length is reserved up front (no regrowth while it
// arrives), but a peer's claim alone reserves at most this much.
constexpr size_t kUpfrontReserve = 4u << 20;

}  // namespace

Session::Session(const SessionConfig& cfg) : cfg_(cfg), dec_(cfg.role) {
  if (cfg.role == Role::client) masks_ = std::make_unique<MaskSource>();
}

void Session::reset(const SessionConfig& cfg) {
  // Every member below: one added to the class must be reset here too (the
  // size check is the reminder; unit_session compares a reset session with a
  // new one).
  static_assert(sizeof(void*) != 8 || sizeof(Session) == 200, "a member was added or removed: update reset()");
  cfg_ = cfg;
  out_.clear();
  out_.release_if_above(kRetainedCapacity);
  out_pos_ = 0;
  dec_ = FrameDecoder(cfg.role);
  remaining_ = 0;
  msg_.clear();
  msg_.release_if_above(kRetainedCapacity);
  msg_size_ = 0;
  close_reason_ = {};
  fail_why_ = "";
  if (cfg.role == Role::client && !masks_) masks_ = std::make_unique<MaskSource>();
  rx_utf8_.reset();
  tx_utf8_.reset();
  peer_code_ = 0;
  pending_failure_ = 0;
  ctrl_len_ = 0;
  mask_off_ = 0;
  state_ = State::open;
  close_sent_ = close_received_ = should_close_ = in_payload_ = false;
  rx_msg_op_ = Opcode::continuation;
  parts_given_ = false;
  tx_msg_op_ = Opcode::continuation;
  reply_pending_ = false;
}

void Session::consume_output(size_t n) {
  out_pos_ += std::min(n, out_.size() - out_pos_);
  if (out_pos_ == out_.size()) {
    out_.clear();
    out_.release_if_above(kRetainedCapacity);
    out_pos_ = 0;
  } else if (out_pos_ >= 65536 && out_pos_ * 2 >= out_.size()) {
    out_.erase_front(out_pos_);
    out_pos_ = 0;
  }
}

void Session::append_frame(Opcode op, bool fin, const uint8_t* data, size_t len, bool header_only) {
  const bool masked = cfg_.role == Role::client;
  if (!masked && !header_only && len < 126) {
    // A server's small frame: a 2-byte header, encoded where it goes.
    uint8_t* at = out_.extend(2 + len);
    at[0] = static_cast<uint8_t>((fin ? 0x80 : 0) | static_cast<uint8_t>(op));
    at[1] = static_cast<uint8_t>(len);
    if (len) std::memcpy(at + 2, data, len);
    return;
  }
  uint8_t hdr[kMaxHeaderSize];
  uint8_t key[4];
  if (masked) masks_->next(key);
  size_t hlen = encode_header(hdr, op, fin, len, masked ? key : nullptr);
  if (header_only) {
    out_.append(hdr, hlen);
    return;
  }
  uint8_t* at = out_.extend(hlen + len);
  std::memcpy(at, hdr, hlen);
  if (len == 0) return;
  if (masked)
    mask_copy(at + hlen, data, len, key);
  else
    std::memcpy(at + hlen, data, len);
}

Event Session::fail_connection(uint16_t code, const char* why) {
  fail_why_ = why;
  if (cfg_.defer_close && !close_sent_) {
    pending_failure_ = code;
  } else if (!close_sent_) {
    uint8_t payload[2] = {static_cast<uint8_t>(code >> 8), static_cast<uint8_t>(code)};
    append_frame(Opcode::close, true, payload, 2);
    close_sent_ = true;
  }
  state_ = State::closed;
  should_close_ = pending_failure_ == 0;
  close_reason_ = why;
  Event ev;
  ev.type = EventType::close;
  ev.failed = true;
  ev.close_code = code;
  ev.close_reason = close_reason_;
  return ev;
}

// A whole single-frame text message: false, with ev the failure, when it is
// not UTF-8 (the same reasons as the incremental path gives, so that how the
// bytes were split never shows in the result).
bool Session::whole_text_ok(const uint8_t* p, size_t n, Event& ev) {
  rx_utf8_.reset();
  if (rx_utf8_.feed(p, n) != Utf8Validator::npos) {
    ev = fail_connection(1007, "text message is not valid UTF-8");
    return false;
  }
  if (!rx_utf8_.complete()) {
    ev = fail_connection(1007, "text message ends inside a UTF-8 sequence");
    return false;
  }
  return true;
}

void Session::drop_joined() {
  msg_.clear();
  msg_.release_if_above(kRetainedCapacity);
}

// Everything but receive()'s inline case (which it also handles the same way).
size_t Session::receive_general(uint8_t* data, size_t len, Event& ev) {
  ev = Event{};
  if (state_ == State::closed || close_received_) return len;  // nothing more is read
  size_t pos = 0;
  while (pos < len || (in_payload_ && remaining_ == 0)) {
    if (!in_payload_) {
      size_t used = 0;
      FrameDecoder::Status st = dec_.parse(data + pos, len - pos, &used);
      pos += used;
      if (st == FrameDecoder::Status::need_more) return pos;
      if (st == FrameDecoder::Status::error) {
        ev = fail_connection(1002, dec_.error());
        return len;
      }
      const FrameHeader& h = dec_.header();
      if (is_control(h.opcode)) {
        ctrl_len_ = 0;
      } else if (h.opcode == Opcode::continuation) {
        if (rx_msg_op_ == Opcode::continuation) {
          ev = fail_connection(1002, "continuation frame without a message in progress");
          return len;
        }
      } else {
        if (rx_msg_op_ != Opcode::continuation) {
          ev = fail_connection(1002, "new data frame while a fragmented message is in progress");
          return len;
        }
        rx_msg_op_ = h.opcode;
        msg_.clear();
        msg_.release_if_above(kRetainedCapacity);
        msg_size_ = 0;
        rx_utf8_.reset();
      }
      if (!is_control(h.opcode)) {
        if (h.length > cfg_.max_message_size - msg_size_) {
          ev = fail_connection(1009, "message larger than the configured maximum");
          return len;
        }
        msg_size_ += h.length;
        // Unless it all lies in the caller's buffer (zero copy below), or
        // nothing is joined (stream).
        if (!cfg_.stream && (len - pos < h.length || !h.fin || h.opcode == Opcode::continuation))
          msg_.ensure(static_cast<size_t>(std::min<uint64_t>(msg_size_, msg_.size() + kUpfrontReserve)));
      }
      remaining_ = h.length;
      mask_off_ = 0;
      in_payload_ = true;

      // Zero copy: a single-frame message whose payload is all here is
      // unmasked in place and delivered from the caller's buffer.
      if (!is_control(h.opcode) && h.opcode != Opcode::continuation && h.fin &&
          len - pos >= h.length) {
        uint8_t* p = data + pos;
        size_t n = static_cast<size_t>(h.length);
        if (h.masked) mask_bytes(p, n, h.mask, 0);
        if (h.opcode == Opcode::text && !whole_text_ok(p, n, ev)) return len;
        pos += n;
        in_payload_ = false;
        remaining_ = 0;
        rx_msg_op_ = Opcode::continuation;
        dec_.reset();
        ev.type = EventType::message;
        ev.is_text = h.opcode == Opcode::text;
        ev.data = p;
        ev.size = n;
        return pos;
      }
    }

    // Payload bytes of the current frame.
    const FrameHeader& h = dec_.header();
    size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, len - pos));
    if (cfg_.stream && !is_control(h.opcode)) {
      if (stream_part(data + pos, n, ev)) return state_ == State::closed ? len : pos + n;
      pos += n;
      continue;
    }
    if (n) {
      uint8_t* p = data + pos;
      if (h.masked) mask_off_ = static_cast<uint8_t>(mask_bytes(p, n, h.mask, mask_off_));
      if (is_control(h.opcode)) {
        if (!ctrl_) {  // the first control payload: its buffer, kept from now on
          ctrl_.reset(new (std::nothrow) uint8_t[kMaxControlPayload]);
          if (!ctrl_) {
            ev = fail_connection(1011, "out of memory");
            return len;
          }
        }
        std::memcpy(ctrl_.get() + ctrl_len_, p, n);
        ctrl_len_ = static_cast<uint8_t>(ctrl_len_ + n);
      } else {
        if (rx_msg_op_ == Opcode::text && rx_utf8_.feed(p, n) != Utf8Validator::npos) {
          // Fail fast: at the first invalid byte, not at the end of the message.
          ev = fail_connection(1007, "text message is not valid UTF-8");
          return len;
        }
        msg_.append(p, n);
      }
      pos += n;
      remaining_ -= n;
    }
    if (remaining_ == 0) {
      if (frame_end(ev)) return pos;
      if (state_ == State::closed) return len;
    }
  }
  return pos;
}

// Stream: n payload bytes of the current data frame at p. True when they
// make an event (a part, or the failure of the connection).
bool Session::stream_part(uint8_t* p, size_t n, Event& ev) {
  const FrameHeader& h = dec_.header();
  if (h.masked && n) mask_off_ = static_cast<uint8_t>(mask_bytes(p, n, h.mask, mask_off_));
  const bool text = rx_msg_op_ == Opcode::text;
  if (text && n && rx_utf8_.feed(p, n) != Utf8Validator::npos) {
    ev = fail_connection(1007, "text message is not valid UTF-8");
    return true;
  }
  remaining_ -= n;
  const bool fin = remaining_ == 0 && h.fin;
  if (remaining_ == 0) {
    in_payload_ = false;
    dec_.reset();
    if (fin && text && !rx_utf8_.complete()) {
      ev = fail_connection(1007, "text message ends inside a UTF-8 sequence");
      return true;
    }
  }
  if (n == 0 && !fin) return false;  // an empty frame inside a message
  ev.type = EventType::part;
  ev.is_text = text;
  ev.data = p;
  ev.size = n;
  ev.first = !parts_given_;
  ev.fin = fin;
  parts_given_ = !fin;
  if (fin) rx_msg_op_ = Opcode::continuation;
  return true;
}

uint8_t* Session::payload_window(size_t min, size_t* room) {
  *room = 0;
  if (cfg_.stream) return nullptr;  // nothing is joined: parts come from the caller's buffer
  if (state_ == State::closed || close_received_ || !in_payload_ || remaining_ < min || remaining_ == 0)
    return nullptr;
  if (is_control(dec_.header().opcode)) return nullptr;
  size_t want = static_cast<size_t>(std::min<uint64_t>(remaining_, kUpfrontReserve));
  msg_.ensure(msg_.size() + want);
  *room = want;
  return msg_.data() + msg_.size();
}

size_t Session::receive_in_place(size_t n, Event& ev) {
  ev = Event{};
  if (state_ == State::closed || close_received_ || n == 0) return n;
  const FrameHeader& h = dec_.header();
  uint8_t* p = msg_.extend(n);  // already there: the window's capacity was reserved
  if (h.masked) mask_off_ = static_cast<uint8_t>(mask_bytes(p, n, h.mask, mask_off_));
  if (rx_msg_op_ == Opcode::text && rx_utf8_.feed(p, n) != Utf8Validator::npos) {
    ev = fail_connection(1007, "text message is not valid UTF-8");
    return n;
  }
  remaining_ -= n;
  if (remaining_ == 0) frame_end(ev);
  return n;
}

// The current frame's payload is complete. Returns true when it produced an event.
bool Session::frame_end(Event& ev) {
  const FrameHeader h = dec_.header();
  in_payload_ = false;
  dec_.reset();
  if (is_control(h.opcode)) {
    handle_control(ev);
    return ev.type != EventType::none;
  }
  if (!h.fin) return false;
  if (rx_msg_op_ == Opcode::text && !rx_utf8_.complete()) {
    ev = fail_connection(1007, "text message ends inside a UTF-8 sequence");
    return true;
  }
  ev.type = EventType::message;
  ev.is_text = rx_msg_op_ == Opcode::text;
  ev.data = msg_.data();
  ev.size = msg_.size();
  rx_msg_op_ = Opcode::continuation;
  return true;
}

void Session::handle_control(Event& ev) {
  const Opcode op = dec_.header().opcode;
  if (op == Opcode::ping) {
    if (cfg_.auto_pong && !close_sent_) append_frame(Opcode::pong, true, ctrl_.get(), ctrl_len_);
    ev.type = EventType::ping;
    ev.data = ctrl_.get();
    ev.size = ctrl_len_;
    return;
  }
  if (op == Opcode::pong) {
    ev.type = EventType::pong;
    ev.data = ctrl_.get();
    ev.size = ctrl_len_;
    return;
  }
  // Close.
  uint16_t code = 1005;
  std::string_view reason;
  if (ctrl_len_ == 1) {
    ev = fail_connection(1002, "close frame with a 1-byte payload");
    return;
  }
  if (ctrl_len_ >= 2) {
    code = static_cast<uint16_t>((ctrl_[0] << 8) | ctrl_[1]);
    if (!receivable_close_code(code)) {
      ev = fail_connection(1002, "invalid close code");
      return;
    }
    if (!utf8_valid(ctrl_.get() + 2, ctrl_len_ - 2)) {
      ev = fail_connection(1007, "close reason is not valid UTF-8");
      return;
    }
    reason = std::string_view(reinterpret_cast<const char*>(ctrl_.get() + 2), ctrl_len_ - 2);
  }
  close_received_ = true;
  peer_code_ = code;
  close_reason_ = reason;  // in ctrl_, which nothing overwrites after a close
  ev.type = EventType::close;
  ev.close_code = code;
  ev.close_reason = close_reason_;
  if (!close_sent_ && cfg_.defer_close) {
    // Sends stay possible (close_sent_ is false) until commit_close().
    reply_pending_ = true;
    state_ = State::closing;
    return;
  }
  append_close_reply();
}

// Echo the peer's code and reason (RFC 6455 5.5.1: typically the code; the
// reason too, so an echo peer sees exactly what it sent). A close without a
// code is answered without one.
void Session::append_close_reply() {
  if (!close_sent_) {
    if (peer_code_ == 1005) {
      append_frame(Opcode::close, true, nullptr, 0);
    } else {
      uint8_t payload[kMaxControlPayload];
      payload[0] = static_cast<uint8_t>(peer_code_ >> 8);
      payload[1] = static_cast<uint8_t>(peer_code_);
      std::memcpy(payload + 2, close_reason_.data(), close_reason_.size());
      append_frame(Opcode::close, true, payload, 2 + close_reason_.size());
    }
    close_sent_ = true;
  }
  reply_pending_ = false;
  state_ = State::closed;
  should_close_ = true;
}

uint8_t* Session::take_message(const Event& ev) {
  if (ev.type != EventType::message || ev.data != msg_.data() || msg_.size() != ev.size) return nullptr;
  // A small message in a big retained block is copied instead: the block
  // would follow the message into the application.
  if (ev.size < 4096 || ev.size < msg_.capacity() / 2) return nullptr;
  return msg_.take_with_nul();
}

void Session::commit_close() {
  if (reply_pending_) {
    append_close_reply();
    return;
  }
  if (!pending_failure_) return;
  if (!close_sent_) {
    uint8_t payload[2] = {static_cast<uint8_t>(pending_failure_ >> 8), static_cast<uint8_t>(pending_failure_)};
    append_frame(Opcode::close, true, payload, 2);
    close_sent_ = true;
  }
  pending_failure_ = 0;
  should_close_ = true;
}

// ---- send side ----

SendResult Session::check_message(Opcode op, const uint8_t* data, size_t len, Utf8Checked checked) const {
  if (op != Opcode::text && op != Opcode::binary) return SendResult::bad_state;
  if (close_sent_) return SendResult::bad_state;
  if (tx_msg_op_ != Opcode::continuation) return SendResult::bad_state;
  if (op == Opcode::text && checked == Utf8Checked::no && !utf8_valid(data, len)) return SendResult::bad_utf8;
  return SendResult::ok;
}

SendResult Session::send_message_general(Opcode op, const uint8_t* data, size_t len, Utf8Checked checked) {
  SendResult r = check_message(op, data, len, checked);
  if (r == SendResult::ok) append_frame(op, true, data, len);
  return r;
}

SendResult Session::send_message_by_reference(Opcode op, const uint8_t* data, size_t len, Utf8Checked checked) {
  if (cfg_.role != Role::server) return SendResult::bad_state;
  SendResult r = check_message(op, data, len, checked);
  if (r == SendResult::ok) append_frame(op, true, data, len, true);
  return r;
}

SendResult Session::send_fragment(Opcode op, const uint8_t* data, size_t len, bool fin, Utf8Checked checked) {
  return fragment(op, data, len, fin, checked, false);
}

SendResult Session::send_fragment_by_reference(Opcode op, const uint8_t* data, size_t len, bool fin,
                                               Utf8Checked checked) {
  if (cfg_.role != Role::server) return SendResult::bad_state;
  return fragment(op, data, len, fin, checked, true);
}

SendResult Session::fragment(Opcode op, const uint8_t* data, size_t len, bool fin, Utf8Checked checked,
                             bool header_only) {
  if (op != Opcode::text && op != Opcode::binary) return SendResult::bad_state;
  if (close_sent_) return SendResult::bad_state;
  Opcode wire = op;
  Utf8Validator v = tx_utf8_;
  if (tx_msg_op_ == Opcode::continuation) {
    v.reset();
  } else {
    if (op != tx_msg_op_) return SendResult::bad_state;
    wire = Opcode::continuation;
  }
  if (op == Opcode::text && checked == Utf8Checked::no) {
    if (v.feed(data, len) != Utf8Validator::npos) return SendResult::bad_utf8;
    if (fin && !v.complete()) return SendResult::bad_utf8;
  }
  append_frame(wire, fin, data, len, header_only);
  tx_utf8_ = v;
  tx_msg_op_ = fin ? Opcode::continuation : op;
  return SendResult::ok;
}

SendResult Session::send_ping(const uint8_t* data, size_t len) {
  if (len > kMaxControlPayload) return SendResult::too_big;
  if (close_sent_) return SendResult::bad_state;
  append_frame(Opcode::ping, true, data, len);
  return SendResult::ok;
}

SendResult Session::send_pong(const uint8_t* data, size_t len) {
  if (len > kMaxControlPayload) return SendResult::too_big;
  if (close_sent_) return SendResult::bad_state;
  append_frame(Opcode::pong, true, data, len);
  return SendResult::ok;
}

bool sendable_close_code(uint16_t code) {
  return code == 0 || (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

SendResult Session::send_close(uint16_t code, std::string_view reason) {
  if (!sendable_close_code(code)) return SendResult::bad_close_code;
  if (code == 0 && !reason.empty()) return SendResult::bad_close_code;
  if (reason.size() > kMaxCloseReason) return SendResult::too_big;
  if (!utf8_valid(reinterpret_cast<const uint8_t*>(reason.data()), reason.size()))
    return SendResult::bad_utf8;
  if (close_sent_) return SendResult::bad_state;
  if (pending_failure_) {
    // The connection already failed: the peer must learn why (1002/1007/1009),
    // not a code the application chose without knowing; and the session must
    // stay closed rather than fall back to closing.
    commit_close();
    return SendResult::ok;
  }
  uint8_t payload[kMaxControlPayload];
  size_t n = 0;
  if (code) {
    payload[0] = static_cast<uint8_t>(code >> 8);
    payload[1] = static_cast<uint8_t>(code);
    std::memcpy(payload + 2, reason.data(), reason.size());
    n = 2 + reason.size();
  }
  append_frame(Opcode::close, true, payload, n);
  close_sent_ = true;
  reply_pending_ = false;  // this close answers the peer's
  if (close_received_) {
    state_ = State::closed;
    should_close_ = true;
  } else {
    state_ = State::closing;
  }
  return SendResult::ok;
}

}  // namespace wscore::proto
