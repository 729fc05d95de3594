// TLS 1.3 record protection after the handshake (RFC 8446 5.2, 5.3, 7.1-7.3).
//
// OpenSSL does the handshake; once it is done, the engine (tls.cpp) takes
// the two application traffic secrets and the record counts from it, frees
// the SSL object (7.5 KB of handshake state an idle connection would keep)
// and protects records itself with these keys, the way kernel TLS does.
// This class is the key schedule and the AEAD: it seals and opens one
// record at a time and knows nothing of buffers or record framing beyond
// the 5-byte header it authenticates.
#pragma once

#include <cstddef>
#include <cstdint>

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;

namespace wscore::net {

// TLS alert descriptions this layer sends or names (RFC 8446 6).
enum : uint8_t {
  kAlertCloseNotify = 0,
  kAlertUnexpectedMessage = 10,
  kAlertBadRecordMac = 20,
  kAlertRecordOverflow = 22,
  kAlertIllegalParameter = 47,
  kAlertDecodeError = 50,
  kAlertInternalError = 80,
  kAlertUserCanceled = 90,
};

class Tls13Keys {
 public:
  static constexpr size_t kMaxSecret = 48;     // SHA-384
  static constexpr size_t kTag = 16;
  static constexpr size_t kHeader = 5;
  static constexpr size_t kMaxPlaintext = 16384;             // 2^14
  static constexpr size_t kMaxCiphertext = kMaxPlaintext + 256;  // 2^14 + 256

  Tls13Keys() = default;
  ~Tls13Keys();
  Tls13Keys(const Tls13Keys&) = delete;
  Tls13Keys& operator=(const Tls13Keys&) = delete;

  // The cipher suites this layer protects: TLS_AES_128_GCM_SHA256 (0x1301),
  // TLS_AES_256_GCM_SHA384 (0x1302), TLS_CHACHA20_POLY1305_SHA256 (0x1303).
  static bool supports(uint16_t suite) noexcept;

  // The traffic secrets (each the suite's hash length) and how many records
  // each direction has already protected with them. false: unknown suite,
  // wrong secret length or a failure inside OpenSSL.
  bool init(uint16_t suite, const uint8_t* tx_secret, const uint8_t* rx_secret, size_t secret_len, uint64_t tx_seq,
            uint64_t rx_seq) noexcept;

  // One record: header, then `n` content bytes and the content type,
  // encrypted, then the tag, written at `out` (kHeader + n + 1 + kTag bytes;
  // n <= kMaxPlaintext). `out` may not overlap `in`.
  bool seal(uint8_t type, const uint8_t* in, size_t n, uint8_t* out) noexcept;

  // Opens one record: `header` is its 5 bytes, `body` its `body_len` bytes
  // (ciphertext and tag). Writes body_len - kTag plaintext bytes at `out`
  // (which may be `body`). Returns 0, or the alert to send (bad_record_mac).
  uint8_t open(const uint8_t* header, const uint8_t* body, size_t body_len, uint8_t* out) noexcept;

  // Next generation of one direction's keys (KeyUpdate, RFC 8446 4.6.3, 7.2).
  bool update_tx() noexcept { return next_generation(tx_, true); }
  bool update_rx() noexcept { return next_generation(rx_, false); }

  uint64_t tx_seq() const noexcept { return tx_.seq; }

  // RFC 8446 7.1's HKDF-Expand-Label with an empty context, for outputs up
  // to the hash length (all TLS 1.3 needs here). Public for its test.
  static bool expand_label(bool sha384, const uint8_t* secret, size_t secret_len, const char* label, uint8_t* out,
                           size_t out_len) noexcept;

 private:
  struct Direction {
    EVP_CIPHER_CTX* ctx = nullptr;
    uint8_t secret[kMaxSecret];
    uint8_t iv[12];
    uint64_t seq = 0;
  };
  bool derive(Direction& d, bool encrypt) noexcept;
  bool next_generation(Direction& d, bool encrypt) noexcept;
  void nonce(const Direction& d, uint8_t out[12]) const noexcept;

  Direction tx_, rx_;
  uint8_t secret_len_ = 0;
  uint8_t key_len_ = 0;
  uint8_t suite_ = 0;  // the low byte of 0x13xx
};

}  // namespace wscore::net
