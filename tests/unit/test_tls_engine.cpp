// src/net/tls.cpp: a client engine and a server engine pumped into each
// other through memory. Every certificate is made here, in memory, at test
// time (no key is ever committed): a CA, an intermediate, leaves for names
// and IP addresses, an expired one, a client certificate.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <memory>  // before cmocka.h, whose fail() macro breaks <ios>
extern "C" {
#include <cmocka.h>
}

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "net/tls.hpp"

using namespace wscore::net;

// ------------------------------------------------------------ certificates

struct Pki {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  Pki() = default;
  Pki(const Pki&) = delete;
  Pki& operator=(const Pki&) = delete;
  ~Pki() {
    X509_free(cert);
    EVP_PKEY_free(key);
  }
  std::string cert_pem() const {
    BIO* b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, cert);
    return drain(b);
  }
  std::string key_pem() const {
    BIO* b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr);
    return drain(b);
  }
  static std::string drain(BIO* b) {
    char* p = nullptr;
    long n = BIO_get_mem_data(b, &p);
    std::string s(p, static_cast<size_t>(n));
    BIO_free(b);
    return s;
  }
};

struct CertSpec {
  std::string cn;
  std::string san;  // "DNS:localhost,IP:127.0.0.1"; "" for none
  bool ca = false;
  long not_before = -3600;  // seconds from now
  long not_after = 86400;
};

static void add_ext(X509* x, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, x, nullptr, nullptr, 0);
  X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  assert_non_null(e);
  assert_int_equal(X509_add_ext(x, e, -1), 1);
  X509_EXTENSION_free(e);
}

// issuer == nullptr: self-signed.
static void make_cert(Pki* out, const CertSpec& spec, const Pki* issuer) {
  static long serial = 1;
  out->key = EVP_EC_gen("P-256");
  assert_non_null(out->key);
  X509* x = X509_new();
  out->cert = x;
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x), spec.not_before);
  X509_gmtime_adj(X509_getm_notAfter(x), spec.not_after);
  X509_set_pubkey(x, out->key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(spec.cn.c_str()), -1, -1,
                             0);
  X509* signer_cert = issuer ? issuer->cert : x;
  EVP_PKEY* signer_key = issuer ? issuer->key : out->key;
  X509_set_issuer_name(x, X509_get_subject_name(signer_cert));
  add_ext(x, signer_cert, NID_subject_key_identifier, "hash");
  add_ext(x, signer_cert, NID_authority_key_identifier, "keyid:always");
  if (spec.ca) {
    add_ext(x, signer_cert, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(x, signer_cert, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(x, signer_cert, NID_basic_constraints, "CA:FALSE");
    add_ext(x, signer_cert, NID_ext_key_usage, "serverAuth,clientAuth");
  }
  if (!spec.san.empty()) add_ext(x, signer_cert, NID_subject_alt_name, spec.san.c_str());
  assert_true(X509_sign(x, signer_key, EVP_sha256()) > 0);
}

// One set for the whole run: key generation is the slow part.
struct World {
  Pki ca, other_ca, inter, leaf, leaf_by_inter, expired, client, client_other;
};
static World* W;

static int setup_world(void**) {
  W = new World;
  make_cert(&W->ca, {"wscore test CA", "", true}, nullptr);
  make_cert(&W->other_ca, {"somebody else's CA", "", true}, nullptr);
  make_cert(&W->inter, {"wscore test intermediate", "", true}, &W->ca);
  make_cert(&W->leaf, {"localhost", "DNS:localhost,DNS:*.example.test,IP:127.0.0.1"}, &W->ca);
  make_cert(&W->leaf_by_inter, {"localhost", "DNS:localhost"}, &W->inter);
  make_cert(&W->expired, {"localhost", "DNS:localhost", false, -2 * 86400, -86400}, &W->ca);
  make_cert(&W->client, {"client one", ""}, &W->ca);
  make_cert(&W->client_other, {"client two", ""}, &W->other_ca);
  return 0;
}

static int teardown_world(void**) {
  delete W;
  return 0;
}

// ------------------------------------------------------------ pumping

struct Pair {
  TlsContext cctx, sctx;
  TlsEngine client, server;
  std::string client_got, server_got;  // plaintext each side read
};

static TlsServerConfig server_cfg(const Pki& leaf, const Pki* chain = nullptr) {
  TlsServerConfig c;
  c.cert_pem = leaf.cert_pem() + (chain ? chain->cert_pem() : "");
  c.key_pem = leaf.key_pem();
  return c;
}

static TlsClientConfig client_cfg(const Pki& trust) {
  TlsClientConfig c;
  c.ca_pem = trust.cert_pem();
  return c;
}

static void setup_pair(Pair* p, const TlsClientConfig& cc, const TlsServerConfig& sc, const char* host) {
  std::string err;
  assert_true(p->cctx.init_client(cc, &err));
  assert_true(p->sctx.init_server(sc, &err));
  assert_true(p->client.init_client(p->cctx, host, &err));
  assert_true(p->server.init_server(p->sctx, &err));
  assert_int_equal(p->client.state(), TlsState::handshaking);
}

static void read_all(TlsEngine& e, std::string* into) {
  uint8_t buf[4096];
  size_t n;
  while ((n = e.read_plaintext(buf, sizeof buf)) > 0) into->append(reinterpret_cast<char*>(buf), n);
}

// Moves ciphertext both ways until neither side has anything to say.
// max_chunk > 0 splits each transfer into random small feeds.
static void pump(Pair* p, size_t max_chunk = 0) {
  std::mt19937 rng(42);
  for (int round = 0; round < 10000; round++) {
    bool moved = false;
    for (int dir = 0; dir < 2; dir++) {
      TlsEngine& from = dir == 0 ? p->client : p->server;
      TlsEngine& to = dir == 0 ? p->server : p->client;
      std::vector<uint8_t> wire;
      from.take_ciphertext(&wire);
      size_t off = 0;
      while (off < wire.size()) {
        size_t n = wire.size() - off;
        if (max_chunk) n = std::min(n, 1 + rng() % max_chunk);
        to.feed_ciphertext(wire.data() + off, n);
        off += n;
        read_all(to, dir == 0 ? &p->server_got : &p->client_got);
      }
      read_all(to, dir == 0 ? &p->server_got : &p->client_got);
      moved = moved || !wire.empty();
    }
    if (!moved) return;
  }
  fail_msg("pump did not settle");
}

static void write_str(TlsEngine& e, const std::string& s) {
  assert_int_equal(e.write_plaintext(reinterpret_cast<const uint8_t*>(s.data()), s.size()), s.size());
}

// ------------------------------------------------------------ tests

static void test_handshake_and_echo(void**) {
  Pair p;
  setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "localhost");
  // Written before the handshake: held, then sent once it is done.
  write_str(p.client, "GET / HTTP/1.1\r\n\r\n");
  assert_int_equal(p.client.pending_plaintext(), 18);
  pump(&p);
  assert_int_equal(p.client.state(), TlsState::open);
  assert_int_equal(p.server.state(), TlsState::open);
  assert_string_equal(p.client.protocol_version(), "TLSv1.3");
  assert_string_equal(p.client.alpn().c_str(), "http/1.1");
  assert_string_equal(p.server.alpn().c_str(), "http/1.1");
  assert_string_equal(p.server.server_name().c_str(), "localhost");
  assert_true(p.client.peer_certificate_present());
  assert_false(p.server.peer_certificate_present());
  assert_string_equal(p.server_got.c_str(), "GET / HTTP/1.1\r\n\r\n");
  write_str(p.server, "HTTP/1.1 101 Switching Protocols\r\n\r\n");
  pump(&p);
  assert_string_equal(p.client_got.c_str(), "HTTP/1.1 101 Switching Protocols\r\n\r\n");
  assert_string_equal(p.client.error().c_str(), "");
  assert_int_equal(p.client.pending_ciphertext(), 0);
  // Idle, neither engine keeps a ciphertext buffer (idle connections' memory).
  assert_int_equal(p.client.ciphertext_memory(), 0);
  assert_int_equal(p.server.ciphertext_memory(), 0);
}

static void test_wildcard_and_trailing_dot(void**) {
  {
    Pair p;
    setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "a.example.test");
    pump(&p);
    assert_int_equal(p.client.state(), TlsState::open);
  }
  {
    Pair p;  // a fully qualified name matches the same certificate
    setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "localhost.");
    pump(&p);
    assert_int_equal(p.client.state(), TlsState::open);
    assert_string_equal(p.server.server_name().c_str(), "localhost");
  }
  {
    Pair p;  // a wildcard covers one label only
    setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "a.b.example.test");
    pump(&p);
    assert_int_equal(p.client.state(), TlsState::failed);
    assert_string_equal(p.client.error().c_str(), "certificate verify failed: hostname mismatch");
  }
}

static void test_unknown_ca(void**) {
  Pair p;
  setup_pair(&p, client_cfg(W->other_ca), server_cfg(W->leaf), "localhost");
  pump(&p);
  assert_int_equal(p.client.state(), TlsState::failed);
  assert_string_equal(p.client.error().c_str(), "certificate verify failed: unable to get local issuer certificate");
  // The client's alert reached the server, which fails with the alert's name.
  assert_int_equal(p.server.state(), TlsState::failed);
  assert_string_equal(p.server.error().c_str(), "tlsv1 alert unknown ca");
  // A failed engine refuses writes and ignores input, without crashing.
  write_str(p.client, "");
  uint8_t b = 0;
  assert_int_equal(p.client.write_plaintext(&b, 1), 0);
  assert_int_equal(p.client.feed_ciphertext(&b, 1), TlsState::failed);
}

static void test_self_signed_server(void**) {
  Pair p;
  setup_pair(&p, client_cfg(W->ca), server_cfg(W->other_ca), "localhost");
  pump(&p);
  assert_int_equal(p.client.state(), TlsState::failed);
  assert_string_equal(p.client.error().c_str(), "certificate verify failed: self-signed certificate");
}

static void test_expired(void**) {
  Pair p;
  setup_pair(&p, client_cfg(W->ca), server_cfg(W->expired), "localhost");
  pump(&p);
  assert_int_equal(p.client.state(), TlsState::failed);
  assert_string_equal(p.client.error().c_str(), "certificate verify failed: certificate has expired");
  assert_string_equal(p.server.error().c_str(), "sslv3 alert certificate expired");
}

static void test_hostname_mismatch(void**) {
  Pair p;
  setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "evil.example.org");
  pump(&p);
  assert_int_equal(p.client.state(), TlsState::failed);
  assert_string_equal(p.client.error().c_str(), "certificate verify failed: hostname mismatch");
}

static void test_ip_addresses(void**) {
  {
    Pair p;  // IP SAN matches; an IP literal sends no SNI
    setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "127.0.0.1");
    pump(&p);
    assert_int_equal(p.client.state(), TlsState::open);
    assert_string_equal(p.server.server_name().c_str(), "");
  }
  {
    Pair p;  // an address the certificate does not list
    setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "::1");
    pump(&p);
    assert_int_equal(p.client.state(), TlsState::failed);
    assert_string_equal(p.client.error().c_str(), "certificate verify failed: IP address mismatch");
  }
  {
    Pair p;  // an IP literal is not matched against DNS names, nor a DNS name against IPs
    setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf_by_inter, &W->inter), "127.0.0.1");
    pump(&p);
    assert_string_equal(p.client.error().c_str(), "certificate verify failed: IP address mismatch");
  }
}

static void test_insecure_skip_verify(void**) {
  TlsClientConfig cc = client_cfg(W->other_ca);
  cc.insecure_skip_verify = true;
  Pair p;
  setup_pair(&p, cc, server_cfg(W->expired), "wrong.name");
  write_str(p.client, "hi");
  pump(&p);
  assert_int_equal(p.client.state(), TlsState::open);
  assert_string_equal(p.server_got.c_str(), "hi");
  assert_string_equal(p.server.server_name().c_str(), "wrong.name");  // SNI still sent
}

static void test_intermediate_chain(void**) {
  {
    Pair p;  // the server sends leaf + intermediate; the client trusts the root only
    setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf_by_inter, &W->inter), "localhost");
    pump(&p);
    assert_int_equal(p.client.state(), TlsState::open);
  }
  {
    Pair p;  // without the intermediate, the chain does not reach the root
    setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf_by_inter), "localhost");
    pump(&p);
    assert_string_equal(p.client.error().c_str(),
                        "certificate verify failed: unable to get local issuer certificate");
  }
}

static TlsServerConfig mtls_server() {
  TlsServerConfig sc = server_cfg(W->leaf);
  sc.verify_client = true;
  sc.ca_pem = W->ca.cert_pem();
  return sc;
}

static void test_mutual_tls(void**) {
  {
    Pair p;
    TlsClientConfig cc = client_cfg(W->ca);
    cc.cert_pem = W->client.cert_pem();
    cc.key_pem = W->client.key_pem();
    setup_pair(&p, cc, mtls_server(), "localhost");
    write_str(p.client, "x");
    pump(&p);
    assert_int_equal(p.server.state(), TlsState::open);
    assert_true(p.server.peer_certificate_present());
    assert_string_equal(p.server_got.c_str(), "x");
  }
  {
    // TLS 1.3: the client finishes its side first and learns of the refusal
    // from the server's alert, on its next read.
    Pair p;
    setup_pair(&p, client_cfg(W->ca), mtls_server(), "localhost");
    pump(&p);
    assert_int_equal(p.server.state(), TlsState::failed);
    assert_string_equal(p.server.error().c_str(), "peer did not return a certificate");
    assert_int_equal(p.client.state(), TlsState::failed);
    assert_string_equal(p.client.error().c_str(), "tlsv13 alert certificate required");
  }
  {
    Pair p;  // a certificate from a CA the server does not trust
    TlsClientConfig cc = client_cfg(W->ca);
    cc.cert_pem = W->client_other.cert_pem();
    cc.key_pem = W->client_other.key_pem();
    setup_pair(&p, cc, mtls_server(), "localhost");
    pump(&p);
    assert_int_equal(p.server.state(), TlsState::failed);
    assert_string_equal(p.server.error().c_str(), "certificate verify failed: unable to get local issuer certificate");
    assert_int_equal(p.client.state(), TlsState::failed);
    assert_string_equal(p.client.error().c_str(), "tlsv1 alert unknown ca");
  }
}

static void test_tls12(void**) {
  Pair p;
  TlsServerConfig sc = mtls_server();
  setup_pair(&p, client_cfg(W->ca), sc, "localhost");
  SSL_CTX_set_max_proto_version(p.sctx.native(), TLS1_2_VERSION);
  // Re-create the server engine so it picks the new limit up.
  std::string err;
  assert_true(p.server.init_server(p.sctx, &err));
  pump(&p);
  // In TLS 1.2 the missing client certificate fails the handshake on both sides.
  assert_int_equal(p.server.state(), TlsState::failed);
  assert_string_equal(p.server.error().c_str(), "peer did not return a certificate");
  assert_int_equal(p.client.state(), TlsState::failed);
  assert_string_equal(p.client.error().c_str(), "sslv3 alert handshake failure");

  Pair q;
  setup_pair(&q, client_cfg(W->ca), server_cfg(W->leaf), "localhost");
  SSL_CTX_set_max_proto_version(q.sctx.native(), TLS1_2_VERSION);
  assert_true(q.server.init_server(q.sctx, &err));
  write_str(q.client, "twelve");
  pump(&q);
  assert_string_equal(q.client.protocol_version(), "TLSv1.2");
  assert_string_equal(q.server_got.c_str(), "twelve");
  q.client.shutdown();
  pump(&q);
  assert_int_equal(q.server.state(), TlsState::closed);
}


// ------------------------------------------------- our own TLS 1.3 records
//
// After a TLS 1.3 handshake the engine protects records itself. Every test
// here pairs it with OpenSSL's record layer too (openssl_records = true on
// one side), so what one writes the other must read: the key schedule, the
// record numbers carried over from the handshake (the server's tickets), the
// nonces, KeyUpdate both ways.

static std::vector<size_t> app_records(const std::vector<uint8_t>& wire);

static void read_all_cap(TlsEngine& e, std::string* into, size_t cap) {
  std::vector<uint8_t> buf(cap);
  size_t n;
  while ((n = e.read_plaintext(buf.data(), cap)) > 0) into->append(reinterpret_cast<char*>(buf.data()), n);
}

// Moves what `from` has to `to` once; reads with a buffer of `cap`.
static std::vector<uint8_t> carry(TlsEngine& from, TlsEngine& to, std::string* got, size_t cap = 4096) {
  std::vector<uint8_t> wire;
  from.take_ciphertext(&wire);
  to.feed_ciphertext(wire.data(), wire.size());
  read_all_cap(to, got, cap);
  return wire;
}

static std::string random_text(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// own_client/own_server: whether each side takes the records over.
static void setup_mixed(Pair* p, bool own_client, bool own_server, const char* suite = nullptr) {
  TlsClientConfig cc = client_cfg(W->ca);
  TlsServerConfig sc = server_cfg(W->leaf);
  cc.openssl_records = !own_client;
  sc.openssl_records = !own_server;
  std::string err;
  assert_true(p->cctx.init_client(cc, &err));
  assert_true(p->sctx.init_server(sc, &err));
  if (suite) assert_int_equal(SSL_CTX_set_ciphersuites(p->cctx.native(), suite), 1);
  assert_true(p->client.init_client(p->cctx, "localhost", &err));
  assert_true(p->server.init_server(p->sctx, &err));
  pump(p);
  assert_int_equal(p->client.state(), TlsState::open);
  assert_int_equal(p->server.state(), TlsState::open);
  assert_int_equal(p->client.own_records(), own_client);
  assert_int_equal(p->server.own_records(), own_server);
}

static void test_own_records_every_suite(void**) {
  const char* suites[] = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"};
  for (const char* suite : suites) {
    for (int mix = 0; mix < 4; mix++) {
      Pair p;
      setup_mixed(&p, mix & 1, mix & 2, suite);
      assert_string_equal(p.client.protocol_version(), "TLSv1.3");
      assert_string_equal(p.server.protocol_version(), "TLSv1.3");
      assert_string_equal(p.server.alpn().c_str(), "http/1.1");
      assert_string_equal(p.client.alpn().c_str(), "http/1.1");
      assert_string_equal(p.server.server_name().c_str(), "localhost");
      assert_true(p.client.peer_certificate_present());
      assert_false(p.server.peer_certificate_present());
      // Sizes around the record boundary, read in small and in large buffers
      // (the engine decrypts into the caller's buffer when a record fits).
      size_t sizes[] = {1, 16383, 16384, 16385, 100000};
      for (size_t i = 0; i < 5; i++) {
        std::string up = random_text(sizes[i], static_cast<unsigned>(i)), down = random_text(sizes[i], 99 + i);
        write_str(p.client, up);
        write_str(p.server, down);
        std::string got_up, got_down;
        carry(p.client, p.server, &got_up, i % 2 ? 100 : 70000);
        carry(p.server, p.client, &got_down, i % 2 ? 70000 : 100);
        assert_true(got_up == up);
        assert_true(got_down == down);
      }
      assert_int_equal(p.client.ciphertext_memory(), 0);
      assert_int_equal(p.server.ciphertext_memory(), 0);
      // close_notify both ways.
      p.client.shutdown();
      p.server.shutdown();
      pump(&p);
      assert_int_equal(p.client.state(), TlsState::closed);
      assert_int_equal(p.server.state(), TlsState::closed);
    }
  }
}

static void test_own_records_fallbacks(void**) {
  {
    Pair p;  // TLS 1.2: OpenSSL keeps the records
    setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "localhost");
    SSL_CTX_set_max_proto_version(p.sctx.native(), TLS1_2_VERSION);
    std::string err;
    assert_true(p.server.init_server(p.sctx, &err));
    pump(&p);
    assert_false(p.client.own_records());
    assert_false(p.server.own_records());
    assert_non_null(p.server.native());
  }
  {
    Pair p;  // a TLS 1.3 suite this layer does not do (CCM): OpenSSL keeps them
    setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "localhost");
    assert_int_equal(SSL_CTX_set_ciphersuites(p.sctx.native(), "TLS_AES_128_CCM_SHA256"), 1);
    assert_int_equal(SSL_CTX_set_ciphersuites(p.cctx.native(), "TLS_AES_128_CCM_SHA256"), 1);
    std::string err;
    assert_true(p.client.init_client(p.cctx, "localhost", &err));
    assert_true(p.server.init_server(p.sctx, &err));
    write_str(p.client, "ccm");
    pump(&p);
    assert_int_equal(p.server.state(), TlsState::open);
    assert_false(p.client.own_records());
    assert_false(p.server.own_records());
    assert_string_equal(p.server_got.c_str(), "ccm");
  }
  {
    Pair p;  // the default: both sides take over, and the SSL objects are gone
    setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "localhost");
    pump(&p);
    assert_true(p.client.own_records());
    assert_true(p.server.own_records());
    assert_null(p.client.native());
    assert_null(p.server.native());
  }
}

// Bytes the server wrote straight after the handshake (0.5-RTT data, in
// the same flight as its tickets) and a client request sent right behind
// its Finished are in the buffers at the handoff: they must be read with
// the right keys.
static void test_own_records_data_at_the_handoff(void**) {
  for (int mix = 0; mix < 4; mix++) {
    Pair p;
    TlsClientConfig cc = client_cfg(W->ca);
    TlsServerConfig sc = server_cfg(W->leaf);
    cc.openssl_records = mix & 1;
    sc.openssl_records = mix & 2;
    setup_pair(&p, cc, sc, "localhost");
    write_str(p.client, "request");
    pump(&p);
    assert_string_equal(p.server_got.c_str(), "request");
    write_str(p.server, "response");
    write_str(p.client, "more");
    pump(&p, 7);  // in small pieces: records split across feeds
    assert_string_equal(p.client_got.c_str(), "response");
    assert_string_equal(p.server_got.c_str(), "requestmore");
  }
}

static void test_own_records_key_update(void**) {
  // OpenSSL asks for an update: the own side takes the peer's next key,
  // answers with its own KeyUpdate, and both go on. Both roles.
  for (int own_is_server = 0; own_is_server < 2; own_is_server++) {
    Pair p;
    setup_mixed(&p, !own_is_server, own_is_server);
    TlsEngine& ossl = own_is_server ? p.client : p.server;
    TlsEngine& own = own_is_server ? p.server : p.client;
    for (int round = 0; round < 3; round++) {
      assert_int_equal(SSL_key_update(ossl.native(), SSL_KEY_UPDATE_REQUESTED), 1);
      std::string a = "update " + std::to_string(round), b = "answer " + std::to_string(round);
      write_str(ossl, a);
      std::string got;
      carry(ossl, own, &got);
      assert_true(got == a);
      write_str(own, b);
      got.clear();
      std::vector<uint8_t> wire = carry(own, ossl, &got);
      assert_true(got == b);
      // The answer is a record of its own before the data: two records.
      assert_int_equal(app_records(wire).size(), 2);
      assert_int_equal(ossl.state(), TlsState::open);
      assert_int_equal(own.state(), TlsState::open);
    }
    // A KeyUpdate that asks for none changes one direction only.
    assert_int_equal(SSL_key_update(ossl.native(), SSL_KEY_UPDATE_NOT_REQUESTED), 1);
    write_str(ossl, "quiet");
    std::string got;
    carry(ossl, own, &got);
    assert_string_equal(got.c_str(), "quiet");
    write_str(own, "still");
    got.clear();
    std::vector<uint8_t> wire = carry(own, ossl, &got);
    assert_string_equal(got.c_str(), "still");
    assert_int_equal(app_records(wire).size(), 1);

    // The own side rekeys by itself every 3 records: OpenSSL reads through
    // several generations.
    own.set_rekey_interval(3);
    std::string big = random_text(10 * 16384 + 5, 7);
    write_str(own, big);
    got.clear();
    wire = carry(own, ossl, &got);
    assert_true(got == big);
    // 11 data records and a KeyUpdate before every third after the first 3.
    assert_true(app_records(wire).size() >= 14);
    assert_int_equal(ossl.state(), TlsState::open);
  }
}

// A record the own side cannot accept fails it with a clear reason and an
// alert the peer understands.
static void expect_refused(Pair* p, bool to_server, const std::vector<uint8_t>& wire, const char* why,
                           const char* peer_why) {
  TlsEngine& to = to_server ? p->server : p->client;
  TlsEngine& back = to_server ? p->client : p->server;
  to.feed_ciphertext(wire.data(), wire.size());
  std::string got;
  read_all(to, &got);
  assert_int_equal(to.state(), TlsState::failed);
  assert_string_equal(to.error().c_str(), why);
  uint8_t extra[16];  // nothing of a refused record is handed up, then or later
  assert_int_equal(got.size(), 0);
  assert_int_equal(to.read_plaintext(extra, sizeof extra), 0);
  std::string ignored;
  carry(to, back, &ignored);  // the alert
  assert_int_equal(back.state(), TlsState::failed);
  assert_string_equal(back.error().c_str(), peer_why);
}

static std::vector<uint8_t> sealed(TlsEngine& e, uint8_t type, const std::vector<uint8_t>& content) {
  assert_true(e.send_record(type, content.data(), content.size()));
  std::vector<uint8_t> wire;
  e.take_ciphertext(&wire);
  return wire;
}

static void test_own_records_refusals(void**) {
  {
    Pair p;  // one bit flipped: the tag does not hold
    setup_mixed(&p, true, true);
    write_str(p.client, "hello");
    std::vector<uint8_t> wire;
    p.client.take_ciphertext(&wire);
    wire[7] ^= 1;
    expect_refused(&p, true, wire, "decryption failed or bad record mac", "sslv3 alert bad record mac");
  }
  {
    Pair p;  // a record replayed: its number is behind, so its nonce is wrong
    setup_mixed(&p, true, true);
    write_str(p.client, "once");
    std::vector<uint8_t> wire;
    p.client.take_ciphertext(&wire);
    p.server.feed_ciphertext(wire.data(), wire.size());
    read_all(p.server, &p.server_got);
    assert_string_equal(p.server_got.c_str(), "once");
    expect_refused(&p, true, wire, "decryption failed or bad record mac", "sslv3 alert bad record mac");
  }
  {
    Pair p;  // a plaintext record after the handshake
    setup_mixed(&p, true, true);
    std::vector<uint8_t> wire = {22, 3, 3, 0, 4, 1, 0, 0, 0};
    expect_refused(&p, true, wire, "unexpected TLS record type 22 after the handshake",
                   "sslv3 alert unexpected message");
  }
  {
    Pair p;  // longer than 2^14 + 256
    setup_mixed(&p, true, true);
    std::vector<uint8_t> wire = {23, 3, 3, 0x41, 0x01};
    expect_refused(&p, true, wire, "TLS record too long", "tlsv1 alert record overflow");
  }
  {
    Pair p;  // a server gets a ClientHello-typed message after the handshake
    setup_mixed(&p, true, true);
    expect_refused(&p, true, sealed(p.client, 22, {1, 0, 0, 0}),
                   "unexpected TLS handshake message 1 after the handshake", "sslv3 alert unexpected message");
  }
  {
    Pair p;  // a server never gets tickets
    setup_mixed(&p, true, true);
    expect_refused(&p, true, sealed(p.client, 22, {4, 0, 0, 1, 0}),
                   "unexpected TLS handshake message 4 after the handshake", "sslv3 alert unexpected message");
  }
  {
    Pair p;  // KeyUpdate: a value that is neither 0 nor 1; a body of two bytes
    setup_mixed(&p, true, true);
    expect_refused(&p, true, sealed(p.client, 22, {24, 0, 0, 1, 2}), "malformed TLS KeyUpdate",
                   "sslv3 alert illegal parameter");
    Pair q;
    setup_mixed(&q, true, true);
    expect_refused(&q, false, sealed(q.server, 22, {24, 0, 0, 2, 0, 0}), "malformed TLS KeyUpdate",
                   "tlsv1 alert decode error");
  }
  {
    Pair p;  // bytes after a KeyUpdate in its record (they would span a key change)
    setup_mixed(&p, true, true);
    expect_refused(&p, true, sealed(p.client, 22, {24, 0, 0, 1, 0, 24}), "TLS KeyUpdate not at the end of its record",
                   "sslv3 alert unexpected message");
  }
  {
    Pair p;  // a handshake message cut off by application data
    setup_mixed(&p, true, true);
    std::vector<uint8_t> wire = sealed(p.server, 22, {4, 0, 0, 9, 1, 2});
    // Data larger than the reader's buffer: decrypted aside, then dropped.
    std::vector<uint8_t> more = sealed(p.server, 23, std::vector<uint8_t>(5000, 'x'));
    wire.insert(wire.end(), more.begin(), more.end());
    expect_refused(&p, false, wire, "TLS handshake message interrupted by another record",
                   "sslv3 alert unexpected message");
  }
  {
    Pair p;  // alerts are two bytes; handshake records are not empty; content type 0 does not exist
    setup_mixed(&p, true, true);
    expect_refused(&p, true, sealed(p.client, 21, {2, 40, 0}), "malformed TLS alert", "tlsv1 alert decode error");
    Pair q;
    setup_mixed(&q, true, true);
    expect_refused(&q, true, sealed(q.client, 22, {}), "empty TLS handshake record", "sslv3 alert unexpected message");
    Pair r;
    setup_mixed(&r, true, true);
    expect_refused(&r, true, sealed(r.client, 0, {0, 0}), "TLS record without a content type",
                   "sslv3 alert unexpected message");
  }
  {
    Pair p;  // a fatal alert from the peer, in OpenSSL's words
    setup_mixed(&p, true, true);
    std::vector<uint8_t> wire = sealed(p.client, 21, {2, 48});
    p.server.feed_ciphertext(wire.data(), wire.size());
    read_all(p.server, &p.server_got);
    assert_int_equal(p.server.state(), TlsState::failed);
    assert_string_equal(p.server.error().c_str(), "tlsv1 alert unknown ca");
  }
}

static void test_own_records_accepted_oddities(void**) {
  Pair p;
  setup_mixed(&p, true, false);  // the own client against an OpenSSL server
  std::string got;
  // OpenSSL takes an empty data record of ours (and the client read the
  // server's tickets in setup_mixed's pump).
  std::vector<uint8_t> wire = sealed(p.client, 23, {});
  p.server.feed_ciphertext(wire.data(), wire.size());
  read_all(p.server, &got);
  assert_int_equal(p.server.state(), TlsState::open);
  assert_string_equal(got.c_str(), "");

  // Tickets split across records and two in one are read and dropped;
  // empty data records and user_canceled are allowed.
  Pair q;
  setup_mixed(&q, true, true);
  std::vector<uint8_t> w = sealed(q.server, 22, {4, 0, 0, 6, 1, 2});
  std::vector<uint8_t> w2 = sealed(q.server, 22, {3, 4, 5, 6, 4, 0, 0, 1, 9});
  std::vector<uint8_t> w3 = sealed(q.server, 23, {});
  std::vector<uint8_t> w4 = sealed(q.server, 21, {1, 90});
  w.insert(w.end(), w2.begin(), w2.end());
  w.insert(w.end(), w3.begin(), w3.end());
  w.insert(w.end(), w4.begin(), w4.end());
  write_str(q.server, "after");
  std::vector<uint8_t> w5;
  q.server.take_ciphertext(&w5);
  w.insert(w.end(), w5.begin(), w5.end());
  q.client.feed_ciphertext(w.data(), w.size());
  read_all(q.client, &got);
  assert_int_equal(q.client.state(), TlsState::open);
  assert_string_equal(got.c_str(), "after");

  // Padding from an OpenSSL peer is stripped.
  Pair r;
  setup_mixed(&r, true, false);
  SSL_set_block_padding(r.server.native(), 512);
  write_str(r.server, "padded");
  got.clear();
  std::vector<uint8_t> padded = carry(r.server, r.client, &got);
  assert_string_equal(got.c_str(), "padded");
  assert_int_equal(app_records(padded)[0], 512 + 16);
}

static void test_garbage_client_hello(void**) {
  TlsContext sctx;
  std::string err;
  assert_true(sctx.init_server(server_cfg(W->leaf), &err));
  {
    TlsEngine s;
    assert_true(s.init_server(sctx, &err));
    const char* http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(s.feed_ciphertext(reinterpret_cast<const uint8_t*>(http), strlen(http)), TlsState::failed);
    assert_string_equal(s.error().c_str(), "http request");
    uint8_t buf[16];
    assert_int_equal(s.read_plaintext(buf, sizeof buf), 0);
  }
  {
    TlsEngine s;  // a handshake record that is not a ClientHello
    assert_true(s.init_server(sctx, &err));
    std::vector<uint8_t> junk = {0x16, 0x03, 0x01, 0x00, 0x08, 0x63, 0, 0, 4, 1, 2, 3, 4};
    assert_int_equal(s.feed_ciphertext(junk.data(), junk.size()), TlsState::failed);
    assert_string_equal(s.error().c_str(), "unexpected message");
    std::vector<uint8_t> alert;
    assert_true(s.take_ciphertext(&alert) > 0);  // the alert to send
    assert_int_equal(alert[0], 0x15);
  }
  {
    TlsEngine s;  // random bytes
    assert_true(s.init_server(sctx, &err));
    std::mt19937 rng(7);
    std::vector<uint8_t> junk(4096);
    for (auto& b : junk) b = static_cast<uint8_t>(rng());
    junk[0] = 0x42;
    assert_int_equal(s.feed_ciphertext(junk.data(), junk.size()), TlsState::failed);
    assert_false(s.error().empty());
  }
  {
    TlsEngine s;  // a ClientHello cut short: waiting, not failed
    assert_true(s.init_server(sctx, &err));
    TlsContext cctx;
    assert_true(cctx.init_client(client_cfg(W->ca), &err));
    TlsEngine c;
    assert_true(c.init_client(cctx, "localhost", &err));
    std::vector<uint8_t> hello;
    c.take_ciphertext(&hello);
    assert_true(hello.size() > 100);
    for (size_t i = 0; i + 1 < hello.size(); i++)
      assert_int_equal(s.feed_ciphertext(&hello[i], 1), TlsState::handshaking);
    s.feed_ciphertext(&hello.back(), 1);
    assert_int_equal(s.state(), TlsState::handshaking);  // now waiting for the client's Finished
    assert_true(s.pending_ciphertext() > 0);
  }
}

static void test_large_round_trip(void**) {
  Pair p;
  setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "localhost");
  pump(&p);
  std::string big(1 << 20, '\0');
  std::mt19937 rng(1);
  for (auto& c : big) c = static_cast<char>(rng());
  // Client: one 1 MiB write. Server: the same bytes in odd pieces.
  write_str(p.client, big);
  for (size_t off = 0; off < big.size();) {
    size_t n = std::min<size_t>(big.size() - off, 1 + rng() % 70000);
    write_str(p.server, big.substr(off, n));
    off += n;
  }
  pump(&p, 3000);
  assert_int_equal(p.server_got.size(), big.size());
  assert_true(p.server_got == big);
  assert_int_equal(p.client_got.size(), big.size());
  assert_true(p.client_got == big);
  // Fed in pieces that end inside records: the tails were kept, then freed.
  assert_int_equal(p.client.ciphertext_memory(), 0);
  assert_int_equal(p.server.ciphertext_memory(), 0);
}

// Counts application-data records (content type 23) and returns their sizes.
static std::vector<size_t> app_records(const std::vector<uint8_t>& wire) {
  std::vector<size_t> sizes;
  size_t off = 0;
  while (off + 5 <= wire.size()) {
    size_t len = (size_t(wire[off + 3]) << 8) | wire[off + 4];
    if (wire[off] == 23) sizes.push_back(len);
    off += 5 + len;
  }
  assert_int_equal(off, wire.size());
  return sizes;
}

static void test_small_writes_are_batched(void**) {
  Pair p;
  setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "localhost");
  pump(&p);
  std::vector<uint8_t> drop;
  p.client.take_ciphertext(&drop);
  std::string expect;
  for (int i = 0; i < 4000; i++) {  // 40,000 bytes as 4,000 writes of 10
    char chunk[11];
    snprintf(chunk, sizeof chunk, "%010d", i);
    write_str(p.client, chunk);
    expect += chunk;
  }
  std::vector<uint8_t> wire;
  p.client.take_ciphertext(&wire);
  std::vector<size_t> recs = app_records(wire);
  // TLS 1.3 adds 17 bytes per record (content type + AEAD tag).
  assert_int_equal(recs.size(), 3);
  assert_int_equal(recs[0], 16384 + 17);
  assert_int_equal(recs[1], 16384 + 17);
  assert_int_equal(recs[2], 40000 - 2 * 16384 + 17);
  p.server.feed_ciphertext(wire.data(), wire.size());
  read_all(p.server, &p.server_got);
  assert_true(p.server_got == expect);
  // flush() alone makes a record of what is held.
  write_str(p.client, "tail");
  assert_int_equal(p.client.pending_plaintext(), 4);
  p.client.flush();
  assert_int_equal(p.client.pending_plaintext(), 0);
  assert_true(p.client.pending_ciphertext() > 4);
}

static void test_close_notify(void**) {
  Pair p;
  setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "localhost");
  pump(&p);
  write_str(p.client, "last words");
  p.client.shutdown();  // held plaintext goes out before close_notify
  assert_true(p.client.shutdown_sent());
  uint8_t b = 'x';
  assert_int_equal(p.client.write_plaintext(&b, 1), 0);
  p.client.shutdown();  // idempotent
  pump(&p);
  assert_string_equal(p.server_got.c_str(), "last words");
  assert_int_equal(p.server.state(), TlsState::closed);
  assert_string_equal(p.server.error().c_str(), "");
  // The other direction stays open until its own close_notify (TLS 1.3 half-close).
  write_str(p.server, "reply");
  p.server.shutdown();
  pump(&p);
  assert_string_equal(p.client_got.c_str(), "reply");
  assert_int_equal(p.client.state(), TlsState::closed);
}

static void test_shutdown_during_handshake(void**) {
  Pair p;
  setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "localhost");
  write_str(p.client, "never sent");
  p.client.shutdown();
  assert_int_equal(p.client.pending_plaintext(), 0);
  std::vector<uint8_t> wire;
  p.client.take_ciphertext(&wire);  // only the ClientHello
  assert_int_equal(app_records(wire).size(), 0);
}

static void test_move(void**) {
  Pair p;
  setup_pair(&p, client_cfg(W->ca), server_cfg(W->leaf), "localhost");
  TlsEngine moved(std::move(p.client));
  assert_int_equal(p.client.state(), TlsState::idle);
  assert_int_equal(p.client.write_plaintext(reinterpret_cast<const uint8_t*>("a"), 1), 0);
  p.client = std::move(moved);
  TlsContext ctx2(std::move(p.sctx));
  assert_false(p.sctx.valid());
  pump(&p);  // the engines keep working: each holds its own context reference
  assert_int_equal(p.client.state(), TlsState::open);
  assert_int_equal(p.server.state(), TlsState::open);
  TlsEngine idle;
  uint8_t buf[4];
  assert_int_equal(idle.feed_ciphertext(buf, 0), TlsState::idle);
  assert_int_equal(idle.read_plaintext(buf, 4), 0);
  std::vector<uint8_t> out;
  assert_int_equal(idle.take_ciphertext(&out), 0);
  idle.shutdown();
}

static std::string write_temp(const std::string& dir, const char* name, const std::string& text) {
  std::string path = dir + "/" + name;
  FILE* f = fopen(path.c_str(), "w");
  assert_non_null(f);
  fwrite(text.data(), 1, text.size(), f);
  fclose(f);
  return path;
}

static void test_files(void**) {
  char tmpl[] = "/tmp/wscore-tls-XXXXXX";
  assert_non_null(mkdtemp(tmpl));
  std::string dir = tmpl;
  std::string ca = write_temp(dir, "ca.pem", W->ca.cert_pem());
  std::string chain = write_temp(dir, "chain.pem", W->leaf_by_inter.cert_pem() + W->inter.cert_pem());
  std::string key = write_temp(dir, "key.pem", W->leaf_by_inter.key_pem());
  std::string ckey = write_temp(dir, "ckey.pem", W->client.key_pem());
  std::string ccert = write_temp(dir, "ccert.pem", W->client.cert_pem());
  std::string junk = write_temp(dir, "junk.pem", "not a certificate\n");

  Pair p;
  TlsClientConfig cc;
  cc.ca_file = ca;
  cc.cert_file = ccert;
  cc.key_file = ckey;
  TlsServerConfig sc;
  sc.cert_file = chain;
  sc.key_file = key;
  sc.verify_client = true;
  sc.ca_file = ca;
  setup_pair(&p, cc, sc, "localhost");
  pump(&p);
  assert_int_equal(p.server.state(), TlsState::open);
  assert_true(p.server.peer_certificate_present());

  std::string err;
  TlsContext c;
  cc = TlsClientConfig{};
  cc.ca_file = dir + "/missing.pem";
  assert_false(c.init_client(cc, &err));
  assert_string_equal(err.c_str(), ("cannot load CA file " + dir + "/missing.pem: No such file or directory").c_str());
  cc.ca_file = junk;
  assert_false(c.init_client(cc, &err));
  assert_string_equal(err.c_str(), ("cannot load CA file " + junk + ": no certificate or crl found").c_str());
  assert_false(c.valid());

  sc = TlsServerConfig{};
  sc.cert_file = junk;
  sc.key_file = key;
  assert_false(c.init_server(sc, &err));
  assert_string_equal(err.c_str(), ("cannot load certificate file " + junk + ": no start line").c_str());
  sc.cert_file = chain;
  sc.key_file = ckey;  // somebody else's key
  assert_false(c.init_server(sc, &err));
  assert_string_equal(err.c_str(), "certificate and private key do not match: key values mismatch");
  sc.key_file = dir + "/nokey.pem";
  assert_false(c.init_server(sc, &err));
  assert_string_equal(err.c_str(), ("cannot load key file " + dir + "/nokey.pem: No such file or directory").c_str());

  for (const char* f : {"ca.pem", "chain.pem", "key.pem", "ckey.pem", "ccert.pem", "junk.pem"})
    unlink((dir + "/" + f).c_str());
  rmdir(dir.c_str());
}

static void test_config_errors(void**) {
  std::string err;
  TlsContext c;
  assert_false(c.init_server(TlsServerConfig{}, &err));
  assert_string_equal(err.c_str(), "a TLS server needs a certificate and a private key");
  TlsServerConfig sc = server_cfg(W->leaf);
  sc.verify_client = true;
  assert_false(c.init_server(sc, &err));
  assert_string_equal(err.c_str(), "verifying clients needs a CA file, directory or PEM");
  sc.ca_pem = "garbage";
  assert_false(c.init_server(sc, &err));
  assert_string_equal(err.c_str(), "CA PEM holds no certificate");

  TlsClientConfig cc;
  cc.cert_pem = W->client.cert_pem();
  assert_false(c.init_client(cc, &err));
  assert_string_equal(err.c_str(), "a certificate needs its private key");
  cc = TlsClientConfig{};
  cc.key_pem = W->client.key_pem();
  assert_false(c.init_client(cc, &err));
  assert_string_equal(err.c_str(), "a private key needs its certificate");
  cc.cert_pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
  assert_false(c.init_client(cc, &err));
  assert_true(err.rfind("cannot read certificate PEM: ", 0) == 0);

  // An encrypted key is refused, never a passphrase prompt on the terminal.
  BIO* b = BIO_new(BIO_s_mem());
  PEM_write_bio_PKCS8PrivateKey(b, W->leaf.key, EVP_aes_128_cbc(), nullptr, 0, nullptr, (void*)"secret");
  sc = server_cfg(W->leaf);
  sc.key_pem = Pki::drain(b);
  assert_false(c.init_server(sc, &err));
  assert_true(err.rfind("cannot read key PEM", 0) == 0);

  // System store: loads (whatever it holds) and then does not trust our CA.
  assert_true(c.init_client(TlsClientConfig{}, &err));
  TlsContext s;
  assert_true(s.init_server(server_cfg(W->leaf), &err));
  TlsEngine e;
  assert_false(e.init_client(s, "localhost", &err));
  assert_string_equal(err.c_str(), "a client engine needs a client context");
  assert_false(e.init_server(c, &err));
  assert_string_equal(err.c_str(), "a server engine needs a server context");
  assert_false(e.init_client(c, "", &err));
  assert_string_equal(err.c_str(), "TLS needs a host name");
  assert_false(e.init_client(TlsContext{}, "localhost", &err));
  assert_string_equal(err.c_str(), "TLS context is not initialised");
  assert_false(e.init_client(c, std::string_view("a\0b", 3), &err));
  assert_string_equal(err.c_str(), "host name contains a NUL byte");
  Pair p;
  p.client = TlsEngine();
  assert_true(p.client.init_client(c, "localhost", &err));
  assert_true(p.server.init_server(s, &err));
  pump(&p);
  assert_string_equal(p.client.error().c_str(), "certificate verify failed: unable to get local issuer certificate");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_handshake_and_echo),
      cmocka_unit_test(test_wildcard_and_trailing_dot),
      cmocka_unit_test(test_unknown_ca),
      cmocka_unit_test(test_self_signed_server),
      cmocka_unit_test(test_expired),
      cmocka_unit_test(test_hostname_mismatch),
      cmocka_unit_test(test_ip_addresses),
      cmocka_unit_test(test_insecure_skip_verify),
      cmocka_unit_test(test_intermediate_chain),
      cmocka_unit_test(test_mutual_tls),
      cmocka_unit_test(test_tls12),
      cmocka_unit_test(test_own_records_every_suite),
      cmocka_unit_test(test_own_records_fallbacks),
      cmocka_unit_test(test_own_records_data_at_the_handoff),
      cmocka_unit_test(test_own_records_key_update),
      cmocka_unit_test(test_own_records_refusals),
      cmocka_unit_test(test_own_records_accepted_oddities),
      cmocka_unit_test(test_garbage_client_hello),
      cmocka_unit_test(test_large_round_trip),
      cmocka_unit_test(test_small_writes_are_batched),
      cmocka_unit_test(test_close_notify),
      cmocka_unit_test(test_shutdown_during_handshake),
      cmocka_unit_test(test_move),
      cmocka_unit_test(test_files),
      cmocka_unit_test(test_config_errors),
  };
  return cmocka_run_group_tests(tests, setup_world, teardown_world);
}
