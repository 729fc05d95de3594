#include "net/tls.hpp"

#include "net/tls13.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <memory>
#include <new>
#include <system_error>
#include <utility>

namespace wscore::net {

namespace {

// The ALPN list a client offers: we speak HTTP/1.1 upgrade only, and a
// server behind an ALPN-routing proxy needs to see it to send us there.
constexpr unsigned char kAlpnHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

// OpenSSL keeps errors in a per-thread queue; the earliest entry is the root
// cause ("No such file or directory" before "system lib"). Drains the queue
// so that the next operation on this thread starts clean.
std::string take_openssl_reason() {
  unsigned long first = ERR_get_error();
  while (ERR_get_error() != 0) {
  }
  if (first == 0) return "";
  // System errors (a missing file) carry errno; 3.0 has no string for them.
  if (ERR_SYSTEM_ERROR(first)) return std::system_category().message(static_cast<int>(ERR_GET_REASON(first)));
  if (const char* r = ERR_reason_error_string(first)) return r;
  char buf[256];
  ERR_error_string_n(first, buf, sizeof buf);
  return buf;
}

bool set_error(std::string* error, std::string msg) {
  if (error) *error = std::move(msg);
  return false;
}

bool fail_with_reason(std::string* error, const std::string& what) {
  std::string reason = take_openssl_reason();
  return set_error(error, reason.empty() ? what : what + ": " + reason);
}

// A key file protected by a passphrase would make OpenSSL prompt on the
// terminal of whatever process embeds us. Refuse instead.
int no_passphrase(char*, int, int, void*) { return -1; }

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

BIO* pem_bio(const std::string& pem) { return BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())); }

bool too_big(const std::string& pem) { return pem.size() > static_cast<size_t>(INT_MAX); }

// Trust anchors for verifying the peer: any of a file, a directory, PEM text.
bool load_trust(SSL_CTX* c, const std::string& file, const std::string& dir, const std::string& pem,
                bool client_ca_list, std::string* error) {
  if (!file.empty()) {
    if (SSL_CTX_load_verify_file(c, file.c_str()) != 1) return fail_with_reason(error, "cannot load CA file " + file);
    if (client_ca_list) {
      // Tells a client which issuers we accept, so it can pick a certificate.
      if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(file.c_str())) SSL_CTX_set_client_CA_list(c, names);
      ERR_clear_error();
    }
  }
  if (!dir.empty() && SSL_CTX_load_verify_dir(c, dir.c_str()) != 1)
    return fail_with_reason(error, "cannot load CA directory " + dir);
  if (!pem.empty()) {
    if (too_big(pem)) return set_error(error, "CA PEM is too large");
    std::unique_ptr<BIO, BioFree> b(pem_bio(pem));
    if (!b) return fail_with_reason(error, "out of memory");
    X509_STORE* store = SSL_CTX_get_cert_store(c);
    int count = 0;
    while (X509* x = PEM_read_bio_X509(b.get(), nullptr, no_passphrase, nullptr)) {
      std::unique_ptr<X509, X509Free> owned(x);
      if (X509_STORE_add_cert(store, x) != 1) return fail_with_reason(error, "cannot add CA certificate");
      if (client_ca_list) SSL_CTX_add_client_CA(c, x);
      count++;
    }
    ERR_clear_error();  // the loop ends on "no start line": that is the end of the text
    if (count == 0) return set_error(error, "CA PEM holds no certificate");
  }
  return true;
}

// Our own certificate chain and key, from files or PEM text.
bool load_identity(SSL_CTX* c, const std::string& cert_file, const std::string& key_file,
                   const std::string& cert_pem, const std::string& key_pem, std::string* error) {
  bool has_cert = !cert_file.empty() || !cert_pem.empty();
  bool has_key = !key_file.empty() || !key_pem.empty();
  if (!cert_file.empty() && !cert_pem.empty()) return set_error(error, "set a certificate file or PEM text, not both");
  if (!key_file.empty() && !key_pem.empty()) return set_error(error, "set a key file or PEM text, not both");
  if (has_cert && !has_key) return set_error(error, "a certificate needs its private key");
  if (has_key && !has_cert) return set_error(error, "a private key needs its certificate");
  if (!has_cert) return true;

  SSL_CTX_set_default_passwd_cb(c, no_passphrase);
  if (!cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(c, cert_file.c_str()) != 1)
      return fail_with_reason(error, "cannot load certificate file " + cert_file);
  } else {
    if (too_big(cert_pem)) return set_error(error, "certificate PEM is too large");
    std::unique_ptr<BIO, BioFree> b(pem_bio(cert_pem));
    if (!b) return fail_with_reason(error, "out of memory");
    std::unique_ptr<X509, X509Free> leaf(PEM_read_bio_X509(b.get(), nullptr, no_passphrase, nullptr));
    if (!leaf) return fail_with_reason(error, "cannot read certificate PEM");
    if (SSL_CTX_use_certificate(c, leaf.get()) != 1) return fail_with_reason(error, "cannot use certificate");
    // Intermediates after the leaf go out in the handshake, as with a chain file.
    while (X509* x = PEM_read_bio_X509(b.get(), nullptr, no_passphrase, nullptr)) {
      if (SSL_CTX_add0_chain_cert(c, x) != 1) {
        X509_free(x);
        return fail_with_reason(error, "cannot add chain certificate");
      }
    }
    ERR_clear_error();
  }
  std::unique_ptr<EVP_PKEY, PkeyFree> key;
  if (!key_file.empty()) {
    std::unique_ptr<BIO, BioFree> b(BIO_new_file(key_file.c_str(), "r"));
    if (!b) return fail_with_reason(error, "cannot load key file " + key_file);
    key.reset(PEM_read_bio_PrivateKey(b.get(), nullptr, no_passphrase, nullptr));
    if (!key) return fail_with_reason(error, "cannot read key file " + key_file);
  } else {
    if (too_big(key_pem)) return set_error(error, "key PEM is too large");
    std::unique_ptr<BIO, BioFree> b(pem_bio(key_pem));
    if (!b) return fail_with_reason(error, "out of memory");
    key.reset(PEM_read_bio_PrivateKey(b.get(), nullptr, no_passphrase, nullptr));
    if (!key) return fail_with_reason(error, "cannot read key PEM");
  }
  // The one error users make here is pairing the wrong files; say so.
  if (SSL_CTX_use_PrivateKey(c, key.get()) != 1)
    return fail_with_reason(error, "certificate and private key do not match");
  if (SSL_CTX_check_private_key(c) != 1) return fail_with_reason(error, "certificate and private key do not match");
  return true;
}

void keylog_hook(const SSL* ssl, const char* line);

void common_settings(SSL_CTX* c) {
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  // Where the engine learns the application traffic secrets it takes over
  // (TlsEngine::take_over_records); lines of engines that keep OpenSSL's
  // records are dropped at once.
  SSL_CTX_set_keylog_callback(c, keylog_hook);
  // Idle connections (most WebSockets, most of the time) give back their
  // 2 x ~34 KiB record buffers.
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  // Renegotiation only adds attack surface to a long-lived stream.
  SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION);
}

// Picks http/1.1 when offered. A client that offers only other protocols (h2)
// is still served: no ALPN answer rather than a fatal alert, since the
// upgrade request that follows decides.
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in, unsigned int inlen,
                void*) {
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kAlpnHttp11, sizeof kAlpnHttp11, in, inlen) ==
      OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

}  // namespace

// ---------------------------------------------------------------- TlsContext

TlsContext::~TlsContext() { reset(); }

TlsContext::TlsContext(TlsContext&& o) noexcept
    : ctx_(std::exchange(o.ctx_, nullptr)),
      server_(o.server_),
      insecure_(o.insecure_),
      openssl_records_(o.openssl_records_) {}

TlsContext& TlsContext::operator=(TlsContext&& o) noexcept {
  if (this != &o) {
    reset();
    ctx_ = std::exchange(o.ctx_, nullptr);
    server_ = o.server_;
    insecure_ = o.insecure_;
    openssl_records_ = o.openssl_records_;
  }
  return *this;
}

void TlsContext::reset() noexcept {
  SSL_CTX_free(ctx_);  // engines hold their own reference through SSL_new
  ctx_ = nullptr;
}

bool TlsContext::init_client(const TlsClientConfig& cfg, std::string* error) noexcept {
  reset();
  ERR_clear_error();
  SSL_CTX* c = SSL_CTX_new(TLS_client_method());
  if (!c) return fail_with_reason(error, "cannot create TLS context");
  common_settings(c);
  bool ok = SSL_CTX_set_alpn_protos(c, kAlpnHttp11, sizeof kAlpnHttp11) == 0;  // 0 is success here
  if (!ok) fail_with_reason(error, "cannot set ALPN");
  if (ok) {
    if (cfg.insecure_skip_verify) {
      SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nullptr);
    } else {
      SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
      if (cfg.ca_file.empty() && cfg.ca_dir.empty() && cfg.ca_pem.empty()) {
        ok = SSL_CTX_set_default_verify_paths(c) == 1;
        if (!ok) fail_with_reason(error, "cannot load the system CA store");
      } else {
        ok = load_trust(c, cfg.ca_file, cfg.ca_dir, cfg.ca_pem, false, error);
      }
    }
  }
  if (ok) ok = load_identity(c, cfg.cert_file, cfg.key_file, cfg.cert_pem, cfg.key_pem, error);
  if (!ok) {
    SSL_CTX_free(c);
    ERR_clear_error();
    return false;
  }
  ctx_ = c;
  server_ = false;
  insecure_ = cfg.insecure_skip_verify;
  openssl_records_ = cfg.openssl_records;
  return true;
}

bool TlsContext::init_server(const TlsServerConfig& cfg, std::string* error) noexcept {
  reset();
  ERR_clear_error();
  if ((cfg.cert_file.empty() && cfg.cert_pem.empty()) || (cfg.key_file.empty() && cfg.key_pem.empty()))
    return set_error(error, "a TLS server needs a certificate and a private key");
  if (cfg.verify_client && cfg.ca_file.empty() && cfg.ca_dir.empty() && cfg.ca_pem.empty())
    return set_error(error, "verifying clients needs a CA file, directory or PEM");
  SSL_CTX* c = SSL_CTX_new(TLS_server_method());
  if (!c) return fail_with_reason(error, "cannot create TLS context");
  common_settings(c);
  SSL_CTX_set_options(c, SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_alpn_select_cb(c, select_alpn, nullptr);
  // Without a session id context, a resumed session with client verification
  // on fails the handshake; any fixed value scopes sessions to this library.
  static const unsigned char kSidCtx[] = "wscore";
  SSL_CTX_set_session_id_context(c, kSidCtx, sizeof kSidCtx - 1);
  bool ok = load_identity(c, cfg.cert_file, cfg.key_file, cfg.cert_pem, cfg.key_pem, error);
  if (ok && cfg.verify_client) {
    ok = load_trust(c, cfg.ca_file, cfg.ca_dir, cfg.ca_pem, true, error);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  if (!ok) {
    SSL_CTX_free(c);
    ERR_clear_error();
    return false;
  }
  ctx_ = c;
  server_ = true;
  insecure_ = false;
  openssl_records_ = cfg.openssl_records;
  return true;
}

// ----------------------------------------------------------------- TlsEngine

const char* tls_state_name(TlsState s) noexcept {
  switch (s) {
    case TlsState::idle: return "idle";
    case TlsState::handshaking: return "handshaking";
    case TlsState::open: return "open";
    case TlsState::closed: return "closed";
    case TlsState::failed: return "failed";
  }
  return "?";
}

// The engine's BIO: reads take ciphertext from in_, writes append to out_.
// A buffer drained to the end is freed, so idle engines hold no ciphertext
// memory. Never pushes back on writes; an empty input means "more is
// coming" (retry), never end of stream.
struct TlsBio {
  static constexpr size_t kOutReserve = 4 * (TlsEngine::kRecordPlaintext + 64);

  static TlsEngine* engine(BIO* b) { return static_cast<TlsEngine*>(BIO_get_data(b)); }

  static int write(BIO* b, const char* data, size_t len, size_t* done) {
    TlsEngine* e = engine(b);
    BIO_clear_retry_flags(b);
    try {
      // Room for a few records at once: the buffer lives for one flush and
      // should not grow record by record.
      std::vector<uint8_t>& o = e->out_;
      if (o.capacity() - o.size() < len) o.reserve(std::max({o.size() + len, 2 * o.capacity(), kOutReserve}));
      o.insert(o.end(), data, data + len);
    } catch (const std::bad_alloc&) {
      return 0;
    }
    *done = len;
    return 1;
  }

  static int read(BIO* b, char* out, size_t cap, size_t* done) {
    TlsEngine* e = engine(b);
    BIO_clear_retry_flags(b);
    size_t have = e->in_.size() - e->in_pos_;
    if (have == 0) {
      BIO_set_retry_read(b);
      *done = 0;
      return 0;
    }
    size_t n = std::min(have, cap);
    std::memcpy(out, e->in_.data() + e->in_pos_, n);
    e->in_pos_ += n;
    if (e->in_pos_ == e->in_.size()) {
      std::vector<uint8_t>().swap(e->in_);
      e->in_pos_ = 0;
    }
    *done = n;
    return 1;
  }

  static long ctrl(BIO* b, int cmd, long, void*) {
    TlsEngine* e = engine(b);
    switch (cmd) {
      case BIO_CTRL_PENDING: return e ? static_cast<long>(e->in_.size() - e->in_pos_) : 0;
      case BIO_CTRL_WPENDING: return e ? static_cast<long>(e->out_.size()) : 0;
      case BIO_CTRL_FLUSH: return 1;
      default: return 0;  // no EOF, no kTLS, nothing else
    }
  }

  static int create(BIO* b) {
    BIO_set_init(b, 1);
    return 1;
  }

  // Made once, kept for the process (OpenSSL frees no methods either).
  static const BIO_METHOD* method() {
    static BIO_METHOD* m = [] {
      BIO_METHOD* x = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "wscore engine");
      if (x && (!BIO_meth_set_write_ex(x, write) || !BIO_meth_set_read_ex(x, read) ||
                !BIO_meth_set_ctrl(x, ctrl) || !BIO_meth_set_create(x, create))) {
        BIO_meth_free(x);
        x = nullptr;
      }
      return x;
    }();
    return m;
  }
};

// What the handshake showed that the record layer needs: the application
// traffic secrets (from the key log) and how many records each side has
// protected with them (from the message callback: every record after a
// side's Finished is under its application key).
struct TlsEngine::Handoff {
  uint8_t client_secret[Tls13Keys::kMaxSecret];
  uint8_t server_secret[Tls13Keys::kMaxSecret];
  uint8_t client_len = 0, server_len = 0;
  bool own_finished = false, peer_finished = false;
  uint64_t tx_records = 0, rx_records = 0;
  ~Handoff() {
    OPENSSL_cleanse(client_secret, sizeof client_secret);
    OPENSSL_cleanse(server_secret, sizeof server_secret);
  }
};

// Our record layer: keys, a record's plaintext that did not fit the
// caller's buffer, a post-handshake message under way, and what the SSL
// object answered before it went.
struct TlsEngine::Own {
  Tls13Keys keys;
  std::vector<uint8_t> plain;  // plaintext of one record, served from plain_pos
  size_t plain_pos = 0;
  uint64_t rekey_after = uint64_t{1} << 24;
  uint32_t hs_left = 0;  // body bytes of the message under way
  uint8_t hs_head[4];    // its header, hs_have bytes of it so far
  uint8_t hs_have = 0;
  uint8_t key_update = 0;
  bool peer_certificate = false;
  std::string alpn, server_name;
  bool message_open() const { return hs_have > 0; }
};

struct TlsHooks {
  static TlsEngine* engine(const SSL* ssl) { return static_cast<TlsEngine*>(SSL_get_app_data(ssl)); }

  // "CLIENT_TRAFFIC_SECRET_0 <client random> <secret>", both in hex.
  static void keylog(const SSL* ssl, const char* line) {
    TlsEngine* e = engine(ssl);
    if (!e || !e->handoff_) return;
    TlsEngine::Handoff& h = *e->handoff_;
    uint8_t* dst;
    uint8_t* len;
    const char* p;
    if (std::strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) == 0) {
      dst = h.client_secret, len = &h.client_len, p = line + 24;
    } else if (std::strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) == 0) {
      dst = h.server_secret, len = &h.server_len, p = line + 24;
    } else {
      return;
    }
    p = std::strchr(p, ' ');
    if (!p) return;
    p++;
    size_t hex = std::strlen(p);
    if (hex % 2 != 0 || hex / 2 > Tls13Keys::kMaxSecret) return;
    auto nibble = [](char ch) -> int {
      if (ch >= '0' && ch <= '9') return ch - '0';
      if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
      if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
      return -1;
    };
    for (size_t i = 0; i < hex / 2; i++) {
      int hi = nibble(p[2 * i]), lo = nibble(p[2 * i + 1]);
      if (hi < 0 || lo < 0) {
        *len = 0;
        return;
      }
      dst[i] = static_cast<uint8_t>(hi << 4 | lo);
    }
    *len = static_cast<uint8_t>(hex / 2);
  }

  static void message(int write_p, int, int content_type, const void* buf, size_t len, SSL* ssl, void*) {
    TlsEngine* e = engine(ssl);
    if (!e || !e->handoff_) return;
    TlsEngine::Handoff& h = *e->handoff_;
    if (content_type == SSL3_RT_HEADER) {
      if (write_p && h.own_finished) h.tx_records++;
      if (!write_p && h.peer_finished) h.rx_records++;
    } else if (content_type == SSL3_RT_HANDSHAKE && len > 0 &&
               static_cast<const uint8_t*>(buf)[0] == SSL3_MT_FINISHED) {
      (write_p ? h.own_finished : h.peer_finished) = true;
    }
  }
};

namespace {
void keylog_hook(const SSL* ssl, const char* line) { TlsHooks::keylog(ssl, line); }
}  // namespace

TlsEngine::TlsEngine() noexcept = default;
TlsEngine::~TlsEngine() { free_all(); }

void TlsEngine::set_rekey_interval(uint64_t records) noexcept {
  if (own_ && records > 0) own_->rekey_after = records;
}

bool TlsEngine::send_record(uint8_t content_type, const uint8_t* p, size_t n) noexcept {
  return own_ && state_ != TlsState::failed && own_seal(content_type, p, n);
}

size_t TlsEngine::ciphertext_memory() const noexcept {
  return in_.capacity() + out_.capacity() + held_.capacity() + (own_ ? own_->plain.capacity() : 0);
}

TlsEngine::TlsEngine(TlsEngine&& o) noexcept
    : ssl_(std::exchange(o.ssl_, nullptr)),
      handoff_(std::move(o.handoff_)),
      own_(std::move(o.own_)),
      bio_(std::exchange(o.bio_, nullptr)),
      in_(std::move(o.in_)),
      in_pos_(std::exchange(o.in_pos_, 0)),
      out_(std::move(o.out_)),
      held_(std::move(o.held_)),
      state_(std::exchange(o.state_, TlsState::idle)),
      server_(o.server_),
      shutdown_sent_(o.shutdown_sent_),
      error_(std::move(o.error_)) {
  if (bio_) BIO_set_data(bio_, this);
  if (ssl_) SSL_set_app_data(ssl_, this);
}

TlsEngine& TlsEngine::operator=(TlsEngine&& o) noexcept {
  if (this != &o) {
    free_all();
    ssl_ = std::exchange(o.ssl_, nullptr);
    if (ssl_) SSL_set_app_data(ssl_, this);
    handoff_ = std::move(o.handoff_);
    own_ = std::move(o.own_);
    bio_ = std::exchange(o.bio_, nullptr);
    in_ = std::move(o.in_);
    in_pos_ = std::exchange(o.in_pos_, 0);
    out_ = std::move(o.out_);
    if (bio_) BIO_set_data(bio_, this);
    held_ = std::move(o.held_);
    state_ = std::exchange(o.state_, TlsState::idle);
    server_ = o.server_;
    shutdown_sent_ = o.shutdown_sent_;
    error_ = std::move(o.error_);
  }
  return *this;
}

void TlsEngine::free_all() noexcept {
  SSL_free(ssl_);  // frees the BIO, which SSL_set_bio handed to it
  ssl_ = nullptr;
  bio_ = nullptr;
  handoff_.reset();
  own_.reset();
  std::vector<uint8_t>().swap(in_);
  in_pos_ = 0;
  std::vector<uint8_t>().swap(out_);
  held_.clear();
  held_.shrink_to_fit();
  state_ = TlsState::idle;
  shutdown_sent_ = false;
  error_.clear();
}

bool TlsEngine::init_common(const TlsContext& ctx, bool server, std::string* error) noexcept {
  free_all();
  ERR_clear_error();
  if (!ctx.valid()) return set_error(error, "TLS context is not initialised");
  if (ctx.is_server() != server)
    return set_error(error, server ? "a server engine needs a server context" : "a client engine needs a client context");
  ssl_ = SSL_new(ctx.native());
  const BIO_METHOD* m = TlsBio::method();
  BIO* bio = m ? BIO_new(m) : nullptr;
  if (!ssl_ || !bio) {
    BIO_free(bio);
    free_all();
    return fail_with_reason(error, "cannot create TLS connection");
  }
  BIO_set_data(bio, this);
  // An empty input means "more is coming", not end of stream: SSL answers
  // WANT_READ and we wait for the next feed. One BIO both ways: SSL_set_bio
  // takes over the one reference.
  SSL_set_bio(ssl_, bio, bio);
  bio_ = bio;
  SSL_set_app_data(ssl_, this);
  if (!ctx.openssl_records()) {
    handoff_.reset(new (std::nothrow) Handoff);
    if (handoff_) SSL_set_msg_callback(ssl_, TlsHooks::message);
  }
  server_ = server;
  state_ = TlsState::handshaking;
  return true;
}

bool TlsEngine::init_client(const TlsContext& ctx, std::string_view host, std::string* error) noexcept {
  // A fully qualified name's trailing dot is not part of SNI (RFC 6066 3)
  // nor of the names in certificates.
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (host.empty()) return set_error(error, "TLS needs a host name");
  if (host.find('\0') != std::string_view::npos) return set_error(error, "host name contains a NUL byte");
  std::string name;
  try {
    name.assign(host);
  } catch (const std::bad_alloc&) {
    return set_error(error, "out of memory");
  }
  // An IPv6 zone ("fe80::1%eth0") names a local interface, not the certificate's address.
  std::string ip = name.substr(0, name.find('%'));
  bool is_ip = false;
  if (ASN1_OCTET_STRING* a = a2i_IPADDRESS(ip.c_str())) {
    ASN1_OCTET_STRING_free(a);
    is_ip = true;
  }
  ERR_clear_error();

  if (!init_common(ctx, false, error)) return false;
  bool ok = true;
  if (!is_ip) ok = SSL_set_tlsext_host_name(ssl_, name.c_str()) == 1;
  if (ok && !ctx.insecure()) {
    if (is_ip) {
      ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), ip.c_str()) == 1;
    } else {
      // "*.example.com" matches "a.example.com" only, never "xa.example.com".
      SSL_set_hostflags(ssl_, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      ok = SSL_set1_host(ssl_, name.c_str()) == 1;
    }
  }
  if (!ok) {
    free_all();
    return fail_with_reason(error, "cannot set TLS host name " + name);
  }
  SSL_set_connect_state(ssl_);
  drive_handshake();  // puts the ClientHello in the output
  if (state_ == TlsState::failed) {
    std::string why = error_;
    free_all();
    return set_error(error, why);
  }
  return true;
}

bool TlsEngine::init_server(const TlsContext& ctx, std::string* error) noexcept {
  if (!init_common(ctx, true, error)) return false;
  SSL_set_accept_state(ssl_);
  return true;
}

void TlsEngine::set_failed(std::string msg) noexcept {
  state_ = TlsState::failed;
  held_.clear();
  if (own_) {  // a record's plaintext not yet read is not handed up after a failure
    std::vector<uint8_t>().swap(own_->plain);
    own_->plain_pos = 0;
  }
  error_ = std::move(msg);
}

void TlsEngine::fail_from_ssl(int ret) noexcept {
  int code = SSL_get_error(ssl_, ret);
  unsigned long first = ERR_peek_error();
  std::string reason = take_openssl_reason();
  long verify = SSL_get_verify_result(ssl_);
  if (verify != X509_V_OK && ERR_GET_LIB(first) == ERR_LIB_SSL &&
      ERR_GET_REASON(first) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
    // OpenSSL's own reason is only "certificate verify failed"; the verify
    // result says which check failed and is what a user can act on.
    reason = std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify);
  } else if (reason.empty()) {
    reason = code == SSL_ERROR_ZERO_RETURN ? "peer closed the TLS connection during the handshake"
                                           : "TLS error (SSL_get_error " + std::to_string(code) + ")";
  }
  set_failed(std::move(reason));
}

void TlsEngine::drive_handshake() noexcept {
  ERR_clear_error();
  int r = SSL_do_handshake(ssl_);
  if (r == 1) {
    state_ = TlsState::open;
    take_over_records();
    flush();  // what the session wrote while the handshake was under way
    return;
  }
  int code = SSL_get_error(ssl_, r);
  if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) return;
  fail_from_ssl(r);
}

TlsState TlsEngine::feed_ciphertext(const uint8_t* data, size_t len) noexcept {
  if (state_ == TlsState::idle || state_ == TlsState::failed) return state_;
  try {
    if (in_pos_ > 0 && in_pos_ >= in_.size() / 2) {  // keep the unread tail only
      in_.erase(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(in_pos_));
      in_pos_ = 0;
    }
    in_.insert(in_.end(), data, data + len);
  } catch (const std::bad_alloc&) {
    set_failed("out of memory buffering TLS input");
    return state_;
  }
  if (state_ == TlsState::handshaking) drive_handshake();
  return state_;
}

// ------------------------------------------------- our own records (TLS 1.3)

bool TlsEngine::take_over_records() noexcept {
  std::unique_ptr<Handoff> h = std::move(handoff_);
  SSL_set_msg_callback(ssl_, nullptr);
  if (!h || SSL_version(ssl_) != TLS1_3_VERSION) return false;
  // OpenSSL reads record by record and stops at the peer's Finished; if it
  // had read or buffered more, its record numbers and ours would differ.
  if (h->rx_records != 0 || SSL_has_pending(ssl_)) return false;
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl_);
  uint16_t suite = cipher ? SSL_CIPHER_get_protocol_id(cipher) : 0;
  if (!Tls13Keys::supports(suite) || h->client_len == 0 || h->client_len != h->server_len) return false;
  std::unique_ptr<Own> own(new (std::nothrow) Own);
  if (!own) return false;
  const uint8_t* tx = server_ ? h->server_secret : h->client_secret;
  const uint8_t* rx = server_ ? h->client_secret : h->server_secret;
  // The server has sent its session tickets under its key by now; the client nothing.
  if (!own->keys.init(suite, tx, rx, h->client_len, h->tx_records, 0)) {
    ERR_clear_error();
    return false;
  }
  try {
    own->alpn = alpn();
    own->server_name = server_name();
  } catch (const std::bad_alloc&) {
    return false;
  }
  own->peer_certificate = peer_certificate_present();
  SSL_free(ssl_);  // and the BIO; in_ keeps whatever followed the handshake
  ssl_ = nullptr;
  bio_ = nullptr;
  own_ = std::move(own);
  return true;
}

size_t TlsEngine::own_fail(uint8_t alert, std::string msg) noexcept {
  if (state_ != TlsState::failed) {
    const uint8_t body[2] = {2, alert};  // fatal
    if (!shutdown_sent_) own_seal(21, body, sizeof body);
    set_failed(std::move(msg));
  }
  return 0;
}

bool TlsEngine::own_seal(uint8_t type, const uint8_t* p, size_t n) noexcept {
  Own& o = *own_;
  try {
    do {
      if (type == 23 && o.keys.tx_seq() >= o.rekey_after && !own_key_update(false)) return false;
      size_t k = std::min(n, Tls13Keys::kMaxPlaintext);
      size_t rec = Tls13Keys::kHeader + k + 1 + Tls13Keys::kTag;
      size_t at = out_.size();
      if (out_.capacity() - at < rec) out_.reserve(std::max({at + rec, 2 * out_.capacity(), TlsBio::kOutReserve}));
      out_.resize(at + rec);
      if (!o.keys.seal(type, p, k, out_.data() + at)) {
        out_.resize(at);
        ERR_clear_error();
        set_failed("TLS record encryption failed");
        return false;
      }
      p += k;
      n -= k;
    } while (n > 0);
  } catch (const std::bad_alloc&) {
    set_failed("out of memory buffering TLS output");
    return false;
  }
  return true;
}

bool TlsEngine::own_key_update(bool request_peer) noexcept {
  // KeyUpdate under the current key; everything after it under the next.
  const uint8_t msg[5] = {24, 0, 0, 1, static_cast<uint8_t>(request_peer ? 1 : 0)};
  if (!own_seal(22, msg, sizeof msg)) return false;
  if (!own_->keys.update_tx()) {
    set_failed("TLS key update failed");
    return false;
  }
  return true;
}

// Post-handshake messages, which may span records or share one.
bool TlsEngine::own_handshake_bytes(const uint8_t* p, size_t n) noexcept {
  Own& o = *own_;
  while (n > 0) {
    if (o.hs_have < 4) {
      size_t take = std::min<size_t>(4 - o.hs_have, n);
      std::memcpy(o.hs_head + o.hs_have, p, take);
      o.hs_have = static_cast<uint8_t>(o.hs_have + take);
      p += take;
      n -= take;
      if (o.hs_have < 4) return true;
      o.hs_left = uint32_t{o.hs_head[1]} << 16 | uint32_t{o.hs_head[2]} << 8 | o.hs_head[3];
      uint8_t type = o.hs_head[0];
      if (type == SSL3_MT_KEY_UPDATE) {
        if (o.hs_left != 1) return own_fail(kAlertDecodeError, "malformed TLS KeyUpdate"), false;
      } else if (type != SSL3_MT_NEWSESSION_TICKET || server_) {
        return own_fail(kAlertUnexpectedMessage, "unexpected TLS handshake message " + std::to_string(type) +
                                                     " after the handshake"),
               false;
      }
    }
    size_t take = std::min<size_t>(o.hs_left, n);
    if (take > 0 && o.hs_head[0] == SSL3_MT_KEY_UPDATE) o.key_update = p[0];
    p += take;
    n -= take;
    o.hs_left -= static_cast<uint32_t>(take);
    if (o.hs_left > 0) return true;
    o.hs_have = 0;  // a whole message; a ticket is dropped (we do not resume)
    if (o.hs_head[0] == SSL3_MT_KEY_UPDATE) {
      // The peer's next record is under its next key, so nothing may follow
      // in this one (RFC 8446 5.1).
      if (n > 0) return own_fail(kAlertUnexpectedMessage, "TLS KeyUpdate not at the end of its record"), false;
      if (o.key_update > 1) return own_fail(kAlertIllegalParameter, "malformed TLS KeyUpdate"), false;
      if (!o.keys.update_rx()) return own_fail(kAlertInternalError, "TLS key update failed"), false;
      if (o.key_update == 1 && !shutdown_sent_ && !own_key_update(false)) return false;
    }
  }
  return true;
}

size_t TlsEngine::own_read(uint8_t* out, size_t cap) noexcept {
  Own& o = *own_;
  for (;;) {
    if (o.plain_pos < o.plain.size()) {
      size_t n = std::min(cap, o.plain.size() - o.plain_pos);
      std::memcpy(out, o.plain.data() + o.plain_pos, n);
      o.plain_pos += n;
      if (o.plain_pos == o.plain.size()) {
        std::vector<uint8_t>().swap(o.plain);
        o.plain_pos = 0;
      }
      return n;
    }
    if (state_ != TlsState::open) return 0;
    size_t have = in_.size() - in_pos_;
    if (have < Tls13Keys::kHeader) return 0;
    const uint8_t* head = in_.data() + in_pos_;
    size_t body = size_t{head[3]} << 8 | head[4];
    if (head[0] != 23)
      return own_fail(kAlertUnexpectedMessage, "unexpected TLS record type " + std::to_string(head[0]) +
                                                   " after the handshake");
    if (body > Tls13Keys::kMaxCiphertext) return own_fail(kAlertRecordOverflow, "TLS record too long");
    if (have < Tls13Keys::kHeader + body) return 0;
    if (body < Tls13Keys::kTag + 1) return own_fail(kAlertBadRecordMac, "decryption failed or bad record mac");
    size_t n = body - Tls13Keys::kTag;
    // Straight into the caller's buffer when the record fits, as a rule.
    bool direct = cap >= n;
    uint8_t* dst = out;
    if (!direct) {
      try {
        o.plain.resize(n);
      } catch (const std::bad_alloc&) {
        return own_fail(kAlertInternalError, "out of memory reading TLS");
      }
      dst = o.plain.data();
    }
    uint8_t alert = o.keys.open(head, head + Tls13Keys::kHeader, body, dst);
    in_pos_ += Tls13Keys::kHeader + body;
    if (in_pos_ == in_.size()) {
      std::vector<uint8_t>().swap(in_);
      in_pos_ = 0;
    }
    if (alert) {
      std::vector<uint8_t>().swap(o.plain);
      ERR_clear_error();
      return own_fail(alert, "decryption failed or bad record mac");
    }
    // TLSInnerPlaintext: content, the real type, zero padding.
    while (n > 0 && dst[n - 1] == 0) n--;
    if (n == 0) return own_fail(kAlertUnexpectedMessage, "TLS record without a content type");
    uint8_t type = dst[--n];
    if (n > Tls13Keys::kMaxPlaintext) return own_fail(kAlertRecordOverflow, "TLS record too long");
    if (type != 22 && o.message_open())
      return own_fail(kAlertUnexpectedMessage, "TLS handshake message interrupted by another record");
    if (type == 23) {
      if (direct) {
        if (n > 0) return n;
        continue;  // empty records are allowed
      }
      if (n == 0)
        std::vector<uint8_t>().swap(o.plain);
      else
        o.plain.resize(n);
      o.plain_pos = 0;
      continue;
    }
    std::vector<uint8_t> done;
    if (!direct) done.swap(o.plain);  // not data: freed once read
    if (type == 21) {
      if (n != 2) return own_fail(kAlertDecodeError, "malformed TLS alert");
      if (dst[1] == kAlertCloseNotify) {
        state_ = TlsState::closed;
        return 0;
      }
      if (dst[1] == kAlertUserCanceled) continue;  // a close_notify is to follow (RFC 8446 6.1)
      // OpenSSL's own words for it ("tlsv1 alert unknown ca"), as before the handoff.
      const char* why = ERR_reason_error_string(ERR_PACK(ERR_LIB_SSL, 0, SSL_AD_REASON_OFFSET + dst[1]));
      set_failed(why ? why : "TLS alert " + std::to_string(dst[1]) + " from the peer");
      return 0;
    }
    if (type == 22) {
      if (n == 0) return own_fail(kAlertUnexpectedMessage, "empty TLS handshake record");
      if (!own_handshake_bytes(dst, n)) return 0;
      continue;
    }
    return own_fail(kAlertUnexpectedMessage, "unexpected TLS content type " + std::to_string(type));
  }
}

size_t TlsEngine::read_plaintext(uint8_t* out, size_t cap) noexcept {
  if (cap == 0) return 0;
  if (own_) return own_read(out, cap);
  if (state_ != TlsState::open) return 0;
  ERR_clear_error();
  size_t n = 0;
  int r = SSL_read_ex(ssl_, out, cap, &n);
  if (r == 1) return n;
  int code = SSL_get_error(ssl_, r);
  if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) return 0;
  if (code == SSL_ERROR_ZERO_RETURN) {
    state_ = TlsState::closed;
    return 0;
  }
  fail_from_ssl(r);
  return 0;
}

size_t TlsEngine::write_plaintext(const uint8_t* data, size_t len) noexcept {
  if (state_ == TlsState::idle || state_ == TlsState::failed || shutdown_sent_) return 0;
  if (len == 0) return 0;
  const size_t accepted = len;
  try {
    if (state_ == TlsState::handshaking || held_.size() + len < kRecordPlaintext) {
      held_.insert(held_.end(), data, data + len);
      return len;
    }
    // Top the held bytes up to one full record, write whole records straight
    // from the caller's buffer (no copy for large messages), hold the tail.
    size_t top = kRecordPlaintext - held_.size();
    if (top < kRecordPlaintext) {
      held_.insert(held_.end(), data, data + top);
      flush();
      data += top;
      len -= top;
    }
    size_t whole = len - len % kRecordPlaintext;
    if (whole > 0 && state_ != TlsState::failed && own_) {
      if (!own_seal(23, data, whole)) return 0;
    } else if (whole > 0 && state_ != TlsState::failed) {
      ERR_clear_error();
      size_t done = 0;
      if (SSL_write_ex(ssl_, data, whole, &done) != 1) {
        fail_from_ssl(0);
        return 0;
      }
    }
    if (state_ == TlsState::failed) return 0;
    held_.insert(held_.end(), data + whole, data + len);
  } catch (const std::bad_alloc&) {
    set_failed("out of memory buffering TLS output");
    return 0;
  }
  return accepted;
}

void TlsEngine::flush() noexcept {
  if (held_.empty() || !handshake_done() || shutdown_sent_) return;
  if (own_) {
    if (own_seal(23, held_.data(), held_.size())) std::vector<uint8_t>().swap(held_);
    return;
  }
  ERR_clear_error();
  size_t done = 0;
  // Our BIO never pushes back, so a write takes everything or fails.
  if (SSL_write_ex(ssl_, held_.data(), held_.size(), &done) != 1) {
    fail_from_ssl(0);
    return;
  }
  std::vector<uint8_t>().swap(held_);  // an idle engine holds no plaintext buffer either
}

size_t TlsEngine::pending_ciphertext() const noexcept {
  return out_.size();
}

size_t TlsEngine::take_ciphertext(std::vector<uint8_t>* out) noexcept {
  if (!ssl_ && !own_) return 0;
  flush();
  size_t n = out_.size();
  if (n == 0) return 0;
  if (out->empty()) {
    out->swap(out_);  // no copy; what out had is freed below: the engine keeps no buffer
  } else {
    try {
      out->insert(out->end(), out_.begin(), out_.end());
    } catch (const std::bad_alloc&) {
      set_failed("out of memory taking TLS output");
      return 0;
    }
  }
  std::vector<uint8_t>().swap(out_);
  return n;
}

void TlsEngine::shutdown() noexcept {
  if ((!ssl_ && !own_) || shutdown_sent_) return;
  if (own_) {
    flush();
    const uint8_t close_notify[2] = {1, kAlertCloseNotify};
    if (state_ != TlsState::failed) own_seal(21, close_notify, sizeof close_notify);
  } else if (handshake_done()) {
    flush();
    if (state_ != TlsState::failed) {
      ERR_clear_error();
      SSL_shutdown(ssl_);  // 0: sent, the peer's is not in yet; we do not wait for it
      ERR_clear_error();
    }
  }
  // Before the handshake is done there is no session to close politely: the
  // transport just closes TCP.
  shutdown_sent_ = true;
  held_.clear();
}

const char* TlsEngine::protocol_version() const noexcept {
  if (own_) return "TLSv1.3";
  return ssl_ && handshake_done() ? SSL_get_version(ssl_) : "";
}

std::string TlsEngine::alpn() const {
  if (own_) return own_->alpn;
  if (!ssl_) return "";
  const unsigned char* p = nullptr;
  unsigned int n = 0;
  SSL_get0_alpn_selected(ssl_, &p, &n);
  return p ? std::string(reinterpret_cast<const char*>(p), n) : std::string();
}

std::string TlsEngine::server_name() const {
  if (own_) return own_->server_name;
  const char* n = ssl_ ? SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name) : nullptr;
  return n ? std::string(n) : std::string();
}

bool TlsEngine::peer_certificate_present() const noexcept {
  if (own_) return own_->peer_certificate;
  return ssl_ && SSL_get0_peer_certificate(ssl_) != nullptr;
}

}  // namespace wscore::net
