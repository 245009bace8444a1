//! Time-based one-time passwords (RFC 6238: HMAC-SHA1, 6 digits, 30-second
//! steps, as authenticator apps make them), the second factor that large
//! approvals need.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use totp_rs::{Algorithm, TOTP};

use crate::domain::request::SecondFactor;
use crate::ports::SecondFactors;
use crate::secret::Secret;

const DIGITS: usize = 6;
const STEP: u64 = 30;
/// One step either side, for a phone's clock a little off and the time it
/// takes to type.
const SKEW: u8 = 1;

/// The shared secret as authenticator apps show it: base32, any case, spaces
/// and padding allowed. At least 128 bits, as RFC 4226 requires.
pub fn secret_bytes(text: &str) -> Result<Vec<u8>, String> {
    let clean: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let bytes = totp_rs::Secret::Encoded(clean)
        .to_bytes()
        .map_err(|_| "not a base32 secret (letters A–Z and digits 2–7)".to_owned())?;
    if bytes.len() < 16 {
        return Err(format!(
            "a {}-bit secret is too short: at least 128 bits (26 base32 characters)",
            bytes.len() * 8
        ));
    }
    Ok(bytes)
}

/// Each enrolled person's generator.
pub struct Totp {
    by_person: HashMap<String, TOTP>,
}

impl Totp {
    /// `secrets`: (person, base32 secret), checked by the config already.
    pub fn new(secrets: impl IntoIterator<Item = (String, Secret)>) -> Result<Totp, String> {
        let mut by_person = HashMap::new();
        for (person, secret) in secrets {
            let bytes = secret_bytes(secret.expose()).map_err(|e| format!("{person}: {e}"))?;
            let totp = TOTP::new(Algorithm::SHA1, DIGITS, SKEW, STEP, bytes)
                .map_err(|e| format!("{person}: {e}"))?;
            by_person.insert(person, totp);
        }
        Ok(Totp { by_person })
    }

    /// Nobody enrolled.
    pub fn none() -> Totp {
        Totp {
            by_person: HashMap::new(),
        }
    }
}

impl SecondFactors for Totp {
    fn check(&self, person: &str, code: Option<&str>, now: DateTime<Utc>) -> SecondFactor {
        let Some(totp) = self.by_person.get(person) else {
            return match code {
                None => SecondFactor::NotGiven,
                Some(_) => SecondFactor::NotEnrolled,
            };
        };
        let Some(code) = code else {
            return SecondFactor::NotGiven;
        };
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        let Ok(at) = u64::try_from(now.timestamp()) else {
            return SecondFactor::Invalid;
        };
        if code.len() == DIGITS && totp.check(&code, at) {
            SecondFactor::Valid
        } else {
            SecondFactor::Invalid
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B's SHA-1 seed, "12345678901234567890".
    const RFC_SEED: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn rfc_6238_test_vectors() {
        // Appendix B, SHA-1, eight digits.
        let eight = TOTP::new(Algorithm::SHA1, 8, 0, 30, secret_bytes(RFC_SEED).unwrap()).unwrap();
        for (t, code) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(eight.generate(t), code, "T = {t}");
        }
        // Six digits are the last six: what an authenticator app shows.
        let t = Totp::new([("ana".to_owned(), Secret::from_value(RFC_SEED))]).unwrap();
        assert_eq!(t.check("ana", Some("287082"), at(59)), SecondFactor::Valid);
        assert_eq!(
            t.check("ana", Some("005 924"), at(1_234_567_890)),
            SecondFactor::Valid
        );
    }

    #[test]
    fn a_code_holds_one_step_either_side_and_no_more() {
        let t = Totp::new([("ana".to_owned(), Secret::from_value(RFC_SEED))]).unwrap();
        let code = Some("081804"); // the step of T = 1111111109
        assert_eq!(t.check("ana", code, at(1_111_111_109)), SecondFactor::Valid);
        assert_eq!(
            t.check("ana", code, at(1_111_111_109 + 30)),
            SecondFactor::Valid
        );
        assert_eq!(
            t.check("ana", code, at(1_111_111_109 + 60)),
            SecondFactor::Invalid
        );
        assert_eq!(
            t.check("ana", code, at(1_111_111_109 - 60)),
            SecondFactor::Invalid
        );
        assert_eq!(
            t.check("ana", Some("81804"), at(1_111_111_109)),
            SecondFactor::Invalid
        );
        assert_eq!(t.check("ana", None, at(0)), SecondFactor::NotGiven);
        assert_eq!(
            t.check("bo", Some("081804"), at(0)),
            SecondFactor::NotEnrolled
        );
        assert_eq!(t.check("bo", None, at(0)), SecondFactor::NotGiven);
    }

    #[test]
    fn secrets_are_read_as_apps_show_them_and_short_ones_refused() {
        assert_eq!(
            secret_bytes("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap(),
            b"12345678901234567890"
        );
        assert!(
            secret_bytes("GEZDGNBV")
                .unwrap_err()
                .contains("40-bit secret is too short")
        );
        assert!(
            secret_bytes("not base32!")
                .unwrap_err()
                .contains("not a base32 secret")
        );
    }
}
