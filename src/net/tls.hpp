// TLS for wss://: a sans-I/O engine over OpenSSL memory BIOs.
//
// The engine never touches a socket or a loop. The transport feeds it the
// bytes that came off the wire and writes out what it hands back, so every
// behaviour (handshake, verification failures, close_notify) is testable in
// one process by pumping two engines into each other.
//
// Driving one connection (one thread at a time, like the SSL object inside):
//
//   TlsEngine e;                       // after a successful e.init_client/init_server
//   e.write_plaintext(p, n);           // any time, even before the handshake is done:
//                                      // held and sent once it is
//   on socket bytes:  e.feed_ciphertext(b, k);
//                     while ((m = e.read_plaintext(buf, cap)) > 0) session.feed(buf, m);
//   after both:       e.take_ciphertext(out);  -> write `out` to the socket
//   then:             e.state() == TlsState::failed  -> drop the connection, e.error() says why
//                     e.state() == TlsState::closed  -> peer sent close_notify (no more input)
//   to close:         e.shutdown(); e.take_ciphertext(out); write it, then close TCP.
//
// Nothing here throws: failures are a false/failed result plus a message
// built from OpenSSL's own reason ("certificate verify failed: certificate
// has expired").
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct bio_st BIO;

namespace wscore::net {

// Where trust and identity come from. A file, a directory (c_rehash layout)
// and PEM text may be combined; PEM text is mainly for tests and embedders.
struct TlsClientConfig {
  std::string ca_file, ca_dir, ca_pem;  // none of them: the system store
  std::string cert_file, key_file;      // client certificate (mutual TLS), optional
  std::string cert_pem, key_pem;        //   ... or as PEM text
  bool insecure_skip_verify = false;    // accept any certificate and any host name
  bool openssl_records = false;         // keep OpenSSL's record layer after the handshake (tests)
};

struct TlsServerConfig {
  std::string cert_file, key_file;      // certificate chain (leaf first) and key
  std::string cert_pem, key_pem;        //   ... or as PEM text
  bool verify_client = false;           // require a client certificate ...
  std::string ca_file, ca_dir, ca_pem;  //   ... issued by one of these (one is needed)
  bool openssl_records = false;         // keep OpenSSL's record layer after the handshake (tests)
};

// An SSL_CTX: the shared, read-only part (trust store, certificate, key).
// Built once per client open or per server and shared by its connections;
// each engine keeps its own reference, so the context may go first.
class TlsContext {
 public:
  TlsContext() = default;
  ~TlsContext();
  TlsContext(TlsContext&& o) noexcept;
  TlsContext& operator=(TlsContext&& o) noexcept;
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // false with *error set ("cannot load CA file /x: No such file or directory",
  // "certificate and private key do not match", ...). Replaces any earlier context.
  bool init_client(const TlsClientConfig& cfg, std::string* error) noexcept;
  bool init_server(const TlsServerConfig& cfg, std::string* error) noexcept;

  bool valid() const noexcept { return ctx_ != nullptr; }
  bool is_server() const noexcept { return server_; }
  bool insecure() const noexcept { return insecure_; }
  bool openssl_records() const noexcept { return openssl_records_; }
  SSL_CTX* native() const noexcept { return ctx_; }

 private:
  void reset() noexcept;
  SSL_CTX* ctx_ = nullptr;
  bool server_ = false;
  bool insecure_ = false;
  bool openssl_records_ = false;
};

enum class TlsState {
  idle,         // not initialised
  handshaking,  // handshake under way (plaintext written now is held)
  open,         // handshake done: plaintext flows both ways
  closed,       // the peer sent close_notify: no more plaintext will come
  failed,       // fatal error; error() says why; take_ciphertext may still hold an alert
};

const char* tls_state_name(TlsState s) noexcept;

// One connection's TLS: an SSL object over a BIO of our own whose two
// buffers (ciphertext in, ciphertext out) hold memory only while they hold
// bytes: an idle connection keeps none (memory BIOs keep their high-water
// mark, ~1.5 KB after a handshake, plus ~1.1 KB for the two BIOs).
//
// After a TLS 1.3 handshake with one of its three AEAD suites, the engine
// takes the application traffic secrets and record numbers from OpenSSL
// (its key log and message callbacks), frees the SSL object and protects
// records itself (tls13.hpp): an idle wss connection then keeps ~2 KB of
// cipher state instead of ~14 KB. Post-handshake messages are handled as
// RFC 8446 4.6 says: KeyUpdate (answered when asked, and sent before 2^24
// records under one key), NewSessionTicket (a client ignores it: we do not
// resume), anything else is unexpected_message. TLS 1.2, and TLS 1.3 with
// another suite, keep OpenSSL's record layer.
class TlsEngine {
 public:
  // Plaintext is gathered up to this much before it becomes records, so many
  // small writes in one loop turn make a few full records, not one each.
  static constexpr size_t kRecordPlaintext = 16384;

  TlsEngine() noexcept;
  ~TlsEngine();
  TlsEngine(TlsEngine&& o) noexcept;
  TlsEngine& operator=(TlsEngine&& o) noexcept;
  TlsEngine(const TlsEngine&) = delete;
  TlsEngine& operator=(const TlsEngine&) = delete;

  // Client: `host` is the URL's host (IPv6 without brackets). A name is sent
  // as SNI and checked against the certificate's DNS names; an IP literal is
  // checked against its IP addresses and sends no SNI (RFC 6066 3). The
  // ClientHello is ready in take_ciphertext right after.
  bool init_client(const TlsContext& ctx, std::string_view host, std::string* error) noexcept;
  bool init_server(const TlsContext& ctx, std::string* error) noexcept;

  // Bytes from the socket. Consumes all of them (they are buffered until
  // read_plaintext asks), advances the handshake. Returns state().
  TlsState feed_ciphertext(const uint8_t* data, size_t len) noexcept;

  // Decrypted application bytes, up to `cap`; 0 when none are ready now (then
  // see state()). Call until 0 after each feed_ciphertext.
  size_t read_plaintext(uint8_t* out, size_t cap) noexcept;

  // Application bytes to send. Accepts all `len` bytes unless the engine has
  // failed or was shut down (then 0). Bytes are held until kRecordPlaintext
  // gather or flush()/take_ciphertext() is called, and until the handshake is done.
  size_t write_plaintext(const uint8_t* data, size_t len) noexcept;
  // Turns held plaintext into records (when the handshake is done).
  void flush() noexcept;

  // Appends every ciphertext byte ready for the socket to *out (after a
  // flush()); returns how many. Handshake messages, records, alerts, close_notify.
  size_t take_ciphertext(std::vector<uint8_t>* out) noexcept;
  // Ciphertext ready now, without flushing held plaintext.
  size_t pending_ciphertext() const noexcept;
  // Plaintext accepted but not yet turned into records.
  size_t pending_plaintext() const noexcept { return held_.size(); }
  // Memory the engine holds in buffers of its own (ciphertext both ways, held
  // plaintext, a record's plaintext not yet read): 0 once everything fed was
  // read and everything written was taken.
  size_t ciphertext_memory() const noexcept;

  // Sends close_notify (after flushing held plaintext, if the handshake is
  // done); later writes are refused. Idempotent. Take the ciphertext after.
  void shutdown() noexcept;

  // Whether records are protected here rather than by OpenSSL (see above).
  bool own_records() const noexcept { return own_ != nullptr; }
  // Records sent under one key before a KeyUpdate (own records; default 2^24,
  // under RFC 8446 5.5's limit for AES-GCM). Tests lower it.
  void set_rekey_interval(uint64_t records) noexcept;
  // Tests: sends one record of any content type and content under the
  // current key, as it is (own records only; false otherwise).
  bool send_record(uint8_t content_type, const uint8_t* p, size_t n) noexcept;
  // The SSL object while OpenSSL does the records (nullptr after the
  // handoff); for tests that drive OpenSSL directly (SSL_key_update).
  SSL* native() const noexcept { return ssl_; }

  TlsState state() const noexcept { return state_; }
  bool handshake_done() const noexcept { return state_ == TlsState::open || state_ == TlsState::closed; }
  bool is_server() const noexcept { return server_; }
  bool shutdown_sent() const noexcept { return shutdown_sent_; }
  // Why it failed: "certificate verify failed: hostname mismatch",
  // "peer did not return a certificate", "tlsv1 alert unknown ca", ... "" otherwise.
  const std::string& error() const noexcept { return error_; }
  // After the handshake: "TLSv1.3", the ALPN protocol ("http/1.1" or ""),
  // and whether the peer showed a certificate.
  const char* protocol_version() const noexcept;
  std::string alpn() const;
  // Server: the SNI host name the client sent ("" for none, e.g. an IP literal).
  std::string server_name() const;
  bool peer_certificate_present() const noexcept;

 private:
  struct Handoff;  // during the handshake: what the key log and message callbacks saw
  struct Own;      // after the handoff: our record layer's state

  bool init_common(const TlsContext& ctx, bool server, std::string* error) noexcept;
  void drive_handshake() noexcept;
  bool take_over_records() noexcept;
  size_t own_read(uint8_t* out, size_t cap) noexcept;
  bool own_handshake_bytes(const uint8_t* p, size_t n) noexcept;
  bool own_seal(uint8_t type, const uint8_t* p, size_t n) noexcept;
  bool own_key_update(bool request_peer) noexcept;
  size_t own_fail(uint8_t alert, std::string msg) noexcept;
  void fail_from_ssl(int ret) noexcept;
  void set_failed(std::string msg) noexcept;
  void free_all() noexcept;

  friend struct TlsBio;
  friend struct TlsHooks;
  SSL* ssl_ = nullptr;
  std::unique_ptr<Handoff> handoff_;
  std::unique_ptr<Own> own_;
  BIO* bio_ = nullptr;            // SSL's read and write BIO; its data points here
  std::vector<uint8_t> in_;       // ciphertext from the peer, SSL reads from in_pos_
  size_t in_pos_ = 0;
  std::vector<uint8_t> out_;      // ciphertext to the peer, written by SSL
  std::vector<uint8_t> held_;
  TlsState state_ = TlsState::idle;
  bool server_ = false;
  bool shutdown_sent_ = false;
  std::string error_;
};

}  // namespace wscore::net
