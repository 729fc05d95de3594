#include "net/tls13.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstring>

namespace wscore::net {

namespace {

// Fetched once per process: an implicit fetch on every init would cost a
// provider lookup per key. OpenSSL keeps them until exit; so do we.
const EVP_CIPHER* cipher_for(uint8_t suite) noexcept {
  static EVP_CIPHER* aes128 = EVP_CIPHER_fetch(nullptr, "AES-128-GCM", nullptr);
  static EVP_CIPHER* aes256 = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  static EVP_CIPHER* chacha = EVP_CIPHER_fetch(nullptr, "ChaCha20-Poly1305", nullptr);
  switch (suite) {
    case 0x01: return aes128;
    case 0x02: return aes256;
    case 0x03: return chacha;
    default: return nullptr;
  }
}

}  // namespace

Tls13Keys::~Tls13Keys() {
  EVP_CIPHER_CTX_free(tx_.ctx);
  EVP_CIPHER_CTX_free(rx_.ctx);
  OPENSSL_cleanse(tx_.secret, sizeof tx_.secret);
  OPENSSL_cleanse(rx_.secret, sizeof rx_.secret);
}

bool Tls13Keys::supports(uint16_t suite) noexcept { return suite >= 0x1301 && suite <= 0x1303; }

bool Tls13Keys::expand_label(bool sha384, const uint8_t* secret, size_t secret_len, const char* label, uint8_t* out,
                             size_t out_len) noexcept {
  // HkdfLabel: uint16 length, opaque label<7..255> = "tls13 " + label,
  // opaque context<0..255> = "". HKDF-Expand's first block is all that is
  // needed when the output is no longer than the hash: HMAC(secret, info || 0x01).
  const EVP_MD* md = sha384 ? EVP_sha384() : EVP_sha256();
  size_t hash_len = sha384 ? 48 : 32;
  size_t label_len = std::strlen(label);
  if (out_len > hash_len || label_len > 249) return false;
  uint8_t info[2 + 1 + 255 + 1 + 1];
  size_t i = 0;
  info[i++] = static_cast<uint8_t>(out_len >> 8);
  info[i++] = static_cast<uint8_t>(out_len);
  info[i++] = static_cast<uint8_t>(6 + label_len);
  std::memcpy(info + i, "tls13 ", 6);
  i += 6;
  std::memcpy(info + i, label, label_len);
  i += label_len;
  info[i++] = 0;     // empty context
  info[i++] = 0x01;  // HKDF-Expand's block counter
  uint8_t block[EVP_MAX_MD_SIZE];
  unsigned int block_len = 0;
  if (!HMAC(md, secret, static_cast<int>(secret_len), info, i, block, &block_len) || block_len != hash_len) return false;
  std::memcpy(out, block, out_len);
  OPENSSL_cleanse(block, sizeof block);
  return true;
}

bool Tls13Keys::derive(Direction& d, bool encrypt) noexcept {
  const EVP_CIPHER* cipher = cipher_for(suite_);
  if (!cipher) return false;
  bool sha384 = secret_len_ == 48;
  uint8_t key[32];
  bool ok = expand_label(sha384, d.secret, secret_len_, "key", key, key_len_) &&
            expand_label(sha384, d.secret, secret_len_, "iv", d.iv, sizeof d.iv);
  if (ok && !d.ctx) ok = (d.ctx = EVP_CIPHER_CTX_new()) != nullptr;
  // The key now, the nonce per record (seal/open).
  if (ok) ok = EVP_CipherInit_ex(d.ctx, cipher, nullptr, key, nullptr, encrypt ? 1 : 0) == 1;
  OPENSSL_cleanse(key, sizeof key);
  return ok;
}

bool Tls13Keys::init(uint16_t suite, const uint8_t* tx_secret, const uint8_t* rx_secret, size_t secret_len,
                     uint64_t tx_seq, uint64_t rx_seq) noexcept {
  if (!supports(suite)) return false;
  suite_ = static_cast<uint8_t>(suite & 0xff);
  size_t want = suite == 0x1302 ? 48 : 32;
  if (secret_len != want) return false;
  secret_len_ = static_cast<uint8_t>(secret_len);
  key_len_ = suite == 0x1301 ? 16 : 32;
  std::memcpy(tx_.secret, tx_secret, secret_len);
  std::memcpy(rx_.secret, rx_secret, secret_len);
  tx_.seq = tx_seq;
  rx_.seq = rx_seq;
  return derive(tx_, true) && derive(rx_, false);
}

bool Tls13Keys::next_generation(Direction& d, bool encrypt) noexcept {
  // application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd", "", Hash.length)
  uint8_t next[kMaxSecret];
  if (!expand_label(secret_len_ == 48, d.secret, secret_len_, "traffic upd", next, secret_len_)) return false;
  std::memcpy(d.secret, next, secret_len_);
  OPENSSL_cleanse(next, sizeof next);
  d.seq = 0;
  return derive(d, encrypt);
}

void Tls13Keys::nonce(const Direction& d, uint8_t out[12]) const noexcept {
  // The IV XOR the 64-bit record number, right-aligned (RFC 8446 5.3).
  std::memcpy(out, d.iv, 12);
  for (int i = 0; i < 8; i++) out[11 - i] ^= static_cast<uint8_t>(d.seq >> (8 * i));
}

bool Tls13Keys::seal(uint8_t type, const uint8_t* in, size_t n, uint8_t* out) noexcept {
  if (n > kMaxPlaintext || !tx_.ctx || tx_.seq == UINT64_MAX) return false;
  size_t body = n + 1 + kTag;
  out[0] = 23;  // application_data, whatever is inside
  out[1] = 3;
  out[2] = 3;
  out[3] = static_cast<uint8_t>(body >> 8);
  out[4] = static_cast<uint8_t>(body);
  uint8_t iv[12];
  nonce(tx_, iv);
  int len = 0;
  uint8_t* p = out + kHeader;
  bool ok = EVP_CipherInit_ex(tx_.ctx, nullptr, nullptr, nullptr, iv, 1) == 1 &&
            EVP_CipherUpdate(tx_.ctx, nullptr, &len, out, kHeader) == 1 &&
            (n == 0 || EVP_CipherUpdate(tx_.ctx, p, &len, in, static_cast<int>(n)) == 1) &&
            EVP_CipherUpdate(tx_.ctx, p + n, &len, &type, 1) == 1 &&
            EVP_CipherFinal_ex(tx_.ctx, p + n + 1, &len) == 1 &&
            EVP_CIPHER_CTX_ctrl(tx_.ctx, EVP_CTRL_AEAD_GET_TAG, kTag, p + n + 1) == 1;
  if (ok) tx_.seq++;
  return ok;
}

uint8_t Tls13Keys::open(const uint8_t* header, const uint8_t* body, size_t body_len, uint8_t* out) noexcept {
  if (!rx_.ctx || body_len < kTag + 1 || body_len > kMaxCiphertext) return kAlertBadRecordMac;
  if (rx_.seq == UINT64_MAX) return kAlertInternalError;
  size_t n = body_len - kTag;
  uint8_t iv[12], tag[kTag];
  std::memcpy(tag, body + n, kTag);  // `out` may be `body`: the tag is read first
  nonce(rx_, iv);
  int len = 0;
  bool ok = EVP_CipherInit_ex(rx_.ctx, nullptr, nullptr, nullptr, iv, 0) == 1 &&
            EVP_CipherUpdate(rx_.ctx, nullptr, &len, header, kHeader) == 1 &&
            EVP_CipherUpdate(rx_.ctx, out, &len, body, static_cast<int>(n)) == 1 &&
            EVP_CIPHER_CTX_ctrl(rx_.ctx, EVP_CTRL_AEAD_SET_TAG, kTag, tag) == 1 &&
            EVP_CipherFinal_ex(rx_.ctx, out + n, &len) == 1;
  if (!ok) return kAlertBadRecordMac;
  rx_.seq++;
  return 0;
}

}  // namespace wscore::net
