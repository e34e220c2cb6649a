//! Local passwords (embedded mode's demo users), kept as PBKDF2-HMAC-SHA256
//! (RFC 8018 §5.2): `pbkdf2-sha256$<iterations>$<salt, base64>$<key, base64>`.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

fn pbkdf2(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let prf = || Hmac::<Sha256>::new_from_slice(password).expect("HMAC takes any key length");
    // One block suffices: the derived key is as long as the hash.
    let mut mac = prf();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u: [u8; 32] = mac.finalize().into_bytes().into();
    let mut out = u;
    for _ in 1..iterations {
        let mut mac = prf();
        mac.update(&u);
        u = mac.finalize().into_bytes().into();
        for (o, x) in out.iter_mut().zip(u) {
            *o ^= x;
        }
    }
    out
}

/// Whether `password` matches `stored`; compared in constant time.
pub fn verify(stored: &str, password: &str) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let parts: Vec<&str> = stored.split('$').collect();
    let [scheme, iterations, salt, key] = parts[..] else {
        return false;
    };
    let (Ok(iterations), Ok(salt), Ok(key)) =
        (iterations.parse::<u32>(), b64.decode(salt), b64.decode(key))
    else {
        return false;
    };
    if scheme != "pbkdf2-sha256" || !(1..=10_000_000).contains(&iterations) {
        return false;
    }
    let got = pbkdf2(password.as_bytes(), &salt, iterations);
    got.len() == key.len() && got.iter().zip(&key).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0
}

/// Hashes a password for the accounts file.
pub fn hash(password: &str, salt: &[u8], iterations: u32) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "pbkdf2-sha256${iterations}${}${}",
        b64.encode(salt),
        b64.encode(pbkdf2(password.as_bytes(), salt, iterations))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_matches_the_published_vector() {
        // RFC 7914 §11: PBKDF2-HMAC-SHA256("passwd", "salt", 1, 64) starts 55 ac 04 6e ...
        let k = pbkdf2(b"passwd", b"salt", 1);
        assert_eq!(&k[..4], &[0x55, 0xac, 0x04, 0x6e]);
        let h = hash("an-2026", b"0123456789abcdef", 1000);
        assert!(verify(&h, "an-2026"));
        assert!(!verify(&h, "an-2027"));
        assert!(!verify("garbage", "an-2026"));
    }
}
