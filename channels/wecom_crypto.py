"""WeCom (企业微信) callback encryption, per WeCom's 加解密方案 (WXBizMsgCrypt):

- msg_signature = SHA1 of the sorted concatenation of token, timestamp, nonce and the
  encrypted text;
- AES-256-CBC, key = Base64Decode(EncodingAESKey + "="), IV = the key's first 16 bytes,
  PKCS#7 padding to a 32-byte block;
- plaintext = 16 random bytes + 4-byte big-endian length of msg + msg + ReceiveId (the CorpID
  for an application's callbacks), the ReceiveId must match ours.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 32


class WeComCryptoError(ValueError):
    pass


class WeComCrypto:
    def __init__(self, token: str, encoding_aes_key: str, receive_id: str):
        if len(encoding_aes_key) != 43:
            raise ValueError("EncodingAESKey must be 43 characters")
        try:
            self.key = base64.b64decode(encoding_aes_key + "=")
        except binascii.Error as e:
            raise ValueError(f"EncodingAESKey is not base64: {e}") from e
        if len(self.key) != 32:
            raise ValueError("EncodingAESKey must decode to 32 bytes")
        self.token, self.receive_id = token, receive_id

    def signature(self, timestamp: str, nonce: str, encrypted: str) -> str:
        return hashlib.sha1("".join(sorted([self.token, timestamp, nonce, encrypted])).encode()).hexdigest()

    def verify(self, signature: str, timestamp: str, nonce: str, encrypted: str) -> bool:
        return hmac.compare_digest(signature.encode(), self.signature(timestamp, nonce, encrypted).encode())

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16]))

    def encrypt(self, text: str, random16: bytes | None = None) -> str:
        msg = text.encode("utf-8")
        raw = (random16 or os.urandom(16)) + struct.pack(">I", len(msg)) + msg + self.receive_id.encode()
        pad = BLOCK - len(raw) % BLOCK
        raw += bytes([pad]) * pad
        enc = self._cipher().encryptor()
        return base64.b64encode(enc.update(raw) + enc.finalize()).decode()

    def decrypt(self, encrypted: str) -> str:
        try:
            data = base64.b64decode(encrypted, validate=True)
        except binascii.Error as e:
            raise WeComCryptoError("not base64") from e
        if not data or len(data) % 16:
            raise WeComCryptoError("bad ciphertext length")
        dec = self._cipher().decryptor()
        raw = dec.update(data) + dec.finalize()
        pad = raw[-1]
        if not 1 <= pad <= BLOCK or raw[-pad:] != bytes([pad]) * pad:
            raise WeComCryptoError("bad padding")
        raw = raw[:-pad]
        if len(raw) < 20:
            raise WeComCryptoError("too short")
        (n,) = struct.unpack(">I", raw[16:20])
        msg, rid = raw[20:20 + n], raw[20 + n:]
        if len(msg) != n or not hmac.compare_digest(rid, self.receive_id.encode()):
            raise WeComCryptoError("ReceiveId does not match")
        try:
            return msg.decode("utf-8")
        except UnicodeDecodeError as e:
            raise WeComCryptoError("not UTF-8") from e
