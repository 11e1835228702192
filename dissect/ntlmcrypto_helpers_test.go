package dissect

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rc4"
	"encoding/binary"
)

func ntlmRC4XOR(key, b []byte) {
	c, err := rc4.NewCipher(key)
	if err != nil {
		panic(err)
	}
	c.XORKeyStream(b, b)
}

func ntlmHMACMD5(key []byte, parts ...[]byte) []byte {
	m := hmac.New(md5.New, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

func ntlmLE32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
