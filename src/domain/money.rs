//! Money: an exact decimal amount with its currency.
//!
//! Everything that handles an amount goes through this module: what people type,
//! what providers send and what purser prints. There is no `f64` anywhere on the way.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The currencies the supported clouds bill in. Each has two minor digits
/// (fen for CNY, cents for USD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "UPPERCASE")]
pub enum Currency {
    Cny,
    Usd,
}

impl Currency {
    pub fn code(self) -> &'static str {
        match self {
            Currency::Cny => "CNY",
            Currency::Usd => "USD",
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Currency::Cny => "¥",
            Currency::Usd => "$",
        }
    }

    /// Minor units per major unit (fen per yuan, cents per dollar).
    fn minor_per_major(self) -> Decimal {
        Decimal::ONE_HUNDRED
    }

    /// Recognises an ISO code or a common name, case-insensitively.
    pub fn from_code(code: &str) -> Option<Currency> {
        match code.to_ascii_uppercase().as_str() {
            "CNY" | "RMB" => Some(Currency::Cny),
            "USD" => Some(Currency::Usd),
            _ => None,
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = AmountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::from_code(s.trim())
            .ok_or_else(|| AmountError::UnknownCurrency(s.trim().to_owned()))
    }
}

/// Why an amount was refused. Each variant is a sentence a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("the amount is empty")]
    Empty,
    #[error("negative amounts are not allowed here: {0:?}")]
    Negative(String),
    #[error("{0:?} has more than two decimals; amounts are exact to the fen (0.01)")]
    TooManyDecimals(String),
    #[error(
        "{0:?} has misplaced thousands separators; write 1,000 or 1000, with groups of three digits"
    )]
    MalformedGrouping(String),
    #[error("{0:?} is in exponent form; write the amount out in digits")]
    Exponent(String),
    #[error("unknown currency {0:?}; known: CNY (¥, RMB), USD ($)")]
    UnknownCurrency(String),
    #[error("{0:?} names two different currencies")]
    ConflictingCurrency(String),
    #[error("{0:?} is not an amount; expected something like ¥1,234.50, 1234.5, 1,000 CNY or 5k")]
    Invalid(String),
    #[error("{0:?} is beyond what purser handles exactly (at most 1,000,000,000,000,000)")]
    Overflow(String),
}

/// The largest amount purser takes from anywhere, a quadrillion: far above
/// any account, and far below where sums and rates of such amounts could
/// overflow or be rounded.
pub fn largest() -> Decimal {
    Decimal::from(1_000_000_000_000_000i64)
}

/// Arithmetic refused because it would mix currencies or overflow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("cannot combine {0} with {1}")]
    CurrencyMismatch(Currency, Currency),
    #[error("amount overflow")]
    Overflow,
    #[error("{0} is not a whole number of minor units")]
    SubMinor(String),
}

/// An exact amount in one currency. Construct it with [`Money::parse`],
/// [`Money::parse_signed`], [`Money::from_minor`] or [`Money::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    #[serde(with = "rust_decimal::serde::str")]
    amount: Decimal,
    currency: Currency,
}

impl Money {
    pub fn new(amount: Decimal, currency: Currency) -> Money {
        Money { amount, currency }
    }

    pub fn zero(currency: Currency) -> Money {
        Money::new(Decimal::ZERO, currency)
    }

    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn is_negative(&self) -> bool {
        self.amount.is_sign_negative() && !self.amount.is_zero()
    }

    pub fn is_positive(&self) -> bool {
        self.amount.is_sign_positive() && !self.amount.is_zero()
    }

    /// From integer minor units (fen, cents): `from_minor(50000, Cny)` is ¥500.00.
    pub fn from_minor(minor: i64, currency: Currency) -> Money {
        Money::new(Decimal::from(minor) / currency.minor_per_major(), currency).normalized()
    }

    /// From minor units given as a decimal (some providers send fen as floats
    /// such as `12345.0`). Refuses fractions of a fen rather than rounding them away.
    pub fn from_minor_decimal(minor: Decimal, currency: Currency) -> Result<Money, MoneyError> {
        if !minor.fract().is_zero() {
            return Err(MoneyError::SubMinor(minor.to_string()));
        }
        let major = minor
            .checked_div(currency.minor_per_major())
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(major, currency).normalized())
    }

    /// Exact integer minor units; refuses an amount finer than one fen.
    pub fn to_minor(&self) -> Result<i64, MoneyError> {
        let minor = self
            .amount
            .checked_mul(self.currency.minor_per_major())
            .ok_or(MoneyError::Overflow)?;
        if !minor.fract().is_zero() {
            return Err(MoneyError::SubMinor(self.amount.to_string()));
        }
        i64::try_from(minor).map_err(|_| MoneyError::Overflow)
    }

    /// Drops insignificant zeros but keeps the cents: 500 → 500.00, 1.500 → 1.50.
    pub fn normalized(self) -> Money {
        let mut amount = self.amount.normalize();
        if amount.scale() < 2 {
            amount.rescale(2);
        }
        Money::new(amount, self.currency)
    }

    /// Rounds to whole minor units (banker's rounding), for computed amounts
    /// such as a daily burn rate.
    pub fn round_to_minor(&self) -> Money {
        Money::new(self.amount.round_dp(2), self.currency).normalized()
    }

    pub fn checked_add(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    pub fn checked_sub(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self
            .amount
            .checked_sub(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    /// Scales by a plain factor (a number of days, a rate).
    pub fn checked_mul(&self, factor: Decimal) -> Result<Money, MoneyError> {
        let amount = self
            .amount
            .checked_mul(factor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    /// Compares two amounts of the same currency.
    pub fn checked_cmp(&self, other: &Money) -> Result<std::cmp::Ordering, MoneyError> {
        self.same_currency(other)?;
        Ok(self.amount.cmp(&other.amount))
    }

    fn same_currency(&self, other: &Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch(self.currency, other.currency))
        }
    }

    /// The amount as an exact decimal string with two decimals: `"1234.50"`.
    pub fn amount_string(&self) -> String {
        let mut a = self.amount;
        if a.scale() < 2 {
            a.rescale(2);
        }
        a.to_string()
    }

    /// Parses what a person types: `¥1,234.50`, `1234.5`, `1,000 CNY`, `5k`, `2万`.
    /// A bare number is in `default`. Negative amounts are refused.
    pub fn parse(input: &str, default: Currency) -> Result<Money, AmountError> {
        parse(input, default, false)
    }

    /// Like [`Money::parse`] but accepts a leading minus: providers report owed
    /// balances as negative amounts (`"-11.19"`).
    pub fn parse_signed(input: &str, default: Currency) -> Result<Money, AmountError> {
        parse(input, default, true)
    }
}

impl fmt::Display for Money {
    /// `¥1,234.50`, `-¥11.19`, `$20.00`: to the fen, as a cashier reads it
    /// (half to even); `amount_string` keeps the exact value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = Money::new(self.amount.round_dp(2), self.currency).amount_string();
        let (sign, digits) = match s.strip_prefix('-') {
            Some(rest) => ("-", rest),
            None => ("", s.as_str()),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let mut grouped = String::with_capacity(int.len() + int.len() / 3);
        for (i, c) in int.chars().enumerate() {
            if i > 0 && (int.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        write!(f, "{sign}{}{grouped}", self.currency.symbol())?;
        if !frac.is_empty() {
            write!(f, ".{frac}")?;
        }
        Ok(())
    }
}

fn parse(input: &str, default: Currency, allow_negative: bool) -> Result<Money, AmountError> {
    let original = input.trim();
    if original.is_empty() {
        return Err(AmountError::Empty);
    }
    let invalid = || AmountError::Invalid(original.to_owned());
    let mut rest = original;
    let mut negative = false;
    let mut currency: Option<Currency> = None;
    let set_currency = |c: Currency, currency: &mut Option<Currency>| match currency {
        Some(existing) if *existing != c => {
            Err(AmountError::ConflictingCurrency(original.to_owned()))
        }
        _ => {
            *currency = Some(c);
            Ok(())
        }
    };

    // A sign may stand before or after the currency symbol: "-¥5" and "¥-5".
    if let Some(r) = rest.strip_prefix('-') {
        negative = true;
        rest = r.trim_start();
    }
    for (symbol, c) in [
        ("¥", Currency::Cny),
        ("￥", Currency::Cny),
        ("$", Currency::Usd),
    ] {
        if let Some(r) = rest.strip_prefix(symbol) {
            set_currency(c, &mut currency)?;
            rest = r.trim_start();
        }
    }
    if let Some(symbol) = rest.chars().next().filter(|c| "€£₩₹".contains(*c)) {
        return Err(AmountError::UnknownCurrency(symbol.to_string()));
    }
    // A leading code: "CNY 5000".
    let lead: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    let after_lead = rest[lead.len()..].trim_start();
    if lead.len() >= 3 && after_lead.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
        let c =
            Currency::from_code(&lead).ok_or_else(|| AmountError::UnknownCurrency(lead.clone()))?;
        set_currency(c, &mut currency)?;
        rest = rest[lead.len()..].trim_start();
    }
    if let Some(r) = rest.strip_prefix('-') {
        if negative {
            return Err(invalid());
        }
        negative = true;
        rest = r.trim_start();
    }
    if rest.starts_with('+') {
        return Err(invalid());
    }

    // The number: digits, grouping commas and one decimal point.
    let number_len = rest
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == ',' || *c == '.'))
        .map_or(rest.len(), |(i, _)| i);
    let (number, mut suffix) = rest.split_at(number_len);
    if number.is_empty() {
        return Err(invalid());
    }

    // Exponent forms ("1e5", "2.5E3") are a provider or spreadsheet artefact.
    if suffix.starts_with(['e', 'E'])
        && suffix[1..]
            .trim_start_matches(['+', '-'])
            .starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(AmountError::Exponent(original.to_owned()));
    }

    // Multiplier suffix: k (thousand) or 万 (ten thousand).
    let mut multiplier = Decimal::ONE;
    let trimmed = suffix.trim_start();
    if let Some(r) = trimmed
        .strip_prefix(['k', 'K'])
        .filter(|r| !r.starts_with(|c: char| c.is_ascii_alphabetic()))
    {
        multiplier = Decimal::from(1000);
        suffix = r;
    } else if let Some(r) = trimmed.strip_prefix('万') {
        multiplier = Decimal::from(10_000);
        suffix = r;
    }

    // Trailing currency: "1,000 CNY", "500元".
    let tail = suffix.trim();
    if !tail.is_empty() {
        let c = match tail {
            "元" | "块" => Currency::Cny,
            t if t.chars().all(|c| c.is_ascii_alphabetic()) => {
                Currency::from_code(t).ok_or_else(|| AmountError::UnknownCurrency(t.to_owned()))?
            }
            _ => return Err(invalid()),
        };
        set_currency(c, &mut currency)?;
    }

    let digits = check_grouping(number)
        .ok_or_else(|| AmountError::MalformedGrouping(original.to_owned()))?;
    let value =
        Decimal::from_str(&digits).map_err(|_| AmountError::Overflow(original.to_owned()))?;
    let value = value
        .checked_mul(multiplier)
        .ok_or_else(|| AmountError::Overflow(original.to_owned()))?
        .normalize();
    if value.scale() > 2 {
        return Err(AmountError::TooManyDecimals(original.to_owned()));
    }
    if negative && !value.is_zero() && !allow_negative {
        return Err(AmountError::Negative(original.to_owned()));
    }
    if value > largest() {
        return Err(AmountError::Overflow(original.to_owned()));
    }
    let value = if negative { -value } else { value };
    Ok(Money::new(value, currency.unwrap_or(default)).normalized())
}

/// Checks the placement of thousands separators and returns the bare digits.
/// Accepted: `1234`, `1,234`, `12,345,678.9`, `.5` is refused (write `0.5`).
fn check_grouping(number: &str) -> Option<String> {
    let (int, frac) = match number.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (number, None),
    };
    if int.is_empty() {
        return None;
    }
    if let Some(f) = frac
        && (f.is_empty() || !f.chars().all(|c| c.is_ascii_digit()))
    {
        return None;
    }
    if int.contains(',') {
        let mut groups = int.split(',');
        let first = groups.next()?;
        if first.is_empty() || first.len() > 3 || first.starts_with('0') {
            return None;
        }
        if !groups.all(|g| g.len() == 3 && g.chars().all(|c| c.is_ascii_digit())) {
            return None;
        }
    } else if !int.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut out: String = int.chars().filter(|c| *c != ',').collect();
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn cny(s: &str) -> Money {
        Money::new(d(s), Currency::Cny)
    }

    #[test]
    fn parses_what_people_type() {
        let cases = [
            ("¥1,234.50", "1234.50", Currency::Cny),
            ("1234.5", "1234.50", Currency::Cny),
            ("1,000 CNY", "1000.00", Currency::Cny),
            ("5k", "5000.00", Currency::Cny),
            ("5K CNY", "5000.00", Currency::Cny),
            ("1.5k", "1500.00", Currency::Cny),
            ("2万", "20000.00", Currency::Cny),
            ("￥ 3,000", "3000.00", Currency::Cny),
            ("CNY 500", "500.00", Currency::Cny),
            ("500元", "500.00", Currency::Cny),
            ("$20", "20.00", Currency::Usd),
            ("20 usd", "20.00", Currency::Usd),
            ("0", "0.00", Currency::Cny),
            ("12,345,678.9", "12345678.90", Currency::Cny),
            ("5.000", "5.00", Currency::Cny),
        ];
        for (input, amount, currency) in cases {
            let m = Money::parse(input, Currency::Cny).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(m.amount_string(), amount, "{input}");
            assert_eq!(m.currency(), currency, "{input}");
        }
    }

    #[test]
    fn refuses_with_a_specific_reason() {
        use AmountError::*;
        type Check = fn(&AmountError) -> bool;
        let cases: [(&str, Check); 15] = [
            ("", |e| matches!(e, Empty)),
            ("   ", |e| matches!(e, Empty)),
            ("-5", |e| matches!(e, Negative(_))),
            ("¥-5", |e| matches!(e, Negative(_))),
            ("12.345", |e| matches!(e, TooManyDecimals(_))),
            ("5,00.0", |e| matches!(e, MalformedGrouping(_))),
            ("1,0000", |e| matches!(e, MalformedGrouping(_))),
            (",100", |e| matches!(e, MalformedGrouping(_))),
            ("1e5", |e| matches!(e, Exponent(_))),
            ("2.5E+3", |e| matches!(e, Exponent(_))),
            ("100 EUR", |e| matches!(e, UnknownCurrency(_))),
            ("€100", |e| matches!(e, UnknownCurrency(_))),
            ("¥100 USD", |e| matches!(e, ConflictingCurrency(_))),
            ("abc", |e| matches!(e, Invalid(_))),
            ("1.", |e| matches!(e, MalformedGrouping(_))),
        ];
        for (input, expected) in cases {
            let err = Money::parse(input, Currency::Cny).expect_err(input);
            assert!(expected(&err), "{input:?} gave {err:?}");
        }
    }

    #[test]
    fn error_text_names_the_input() {
        let err = Money::parse("5,00.0", Currency::Cny).unwrap_err();
        assert!(err.to_string().contains("\"5,00.0\""), "{err}");
    }

    #[test]
    fn providers_may_send_negative_balances() {
        let m = Money::parse_signed("-11.19", Currency::Cny).unwrap();
        assert_eq!(m.amount(), d("-11.19"));
        assert!(m.is_negative());
        assert_eq!(m.to_string(), "-¥11.19");
        assert_eq!(
            Money::parse_signed("-1,234.5", Currency::Cny)
                .unwrap()
                .to_string(),
            "-¥1,234.50"
        );
    }

    #[test]
    fn fen_round_trip() {
        assert_eq!(Money::from_minor(50000, Currency::Cny), cny("500.00"));
        assert_eq!(cny("500").to_minor().unwrap(), 50000);
        assert_eq!(
            Money::from_minor(-1119, Currency::Cny).amount_string(),
            "-11.19"
        );
        assert_eq!(
            Money::from_minor_decimal(d("9647442.0"), Currency::Cny)
                .unwrap()
                .amount_string(),
            "96474.42"
        );
        assert!(matches!(
            Money::from_minor_decimal(d("1.5"), Currency::Cny),
            Err(MoneyError::SubMinor(_))
        ));
        assert!(matches!(
            cny("0.001").to_minor(),
            Err(MoneyError::SubMinor(_))
        ));
    }

    #[test]
    fn arithmetic_refuses_to_mix_currencies() {
        let usd = Money::new(d("1"), Currency::Usd);
        assert_eq!(
            cny("1").checked_add(&usd),
            Err(MoneyError::CurrencyMismatch(Currency::Cny, Currency::Usd))
        );
        assert!(cny("1").checked_sub(&usd).is_err());
        assert!(cny("1").checked_cmp(&usd).is_err());
        assert_eq!(
            cny("1.10").checked_add(&cny("2.05")).unwrap().amount(),
            d("3.15")
        );
    }

    #[test]
    fn displays_with_grouping() {
        assert_eq!(cny("1234567.5").to_string(), "¥1,234,567.50");
        assert_eq!(cny("999").to_string(), "¥999.00");
        assert_eq!(Money::new(d("0.5"), Currency::Usd).to_string(), "$0.50");
    }

    #[test]
    fn displays_to_the_fen_half_to_even_and_keeps_the_exact_value() {
        // A figure in yuan with six decimals, as some clouds send it.
        let m = cny("12345.678901");
        assert_eq!(m.to_string(), "¥12,345.68");
        assert_eq!(m.amount_string(), "12345.678901");
        assert_eq!(cny("0.125").to_string(), "¥0.12");
        assert_eq!(cny("0.135").to_string(), "¥0.14");
        assert_eq!(
            Money::new(d("-11.185"), Currency::Cny).to_string(),
            "-¥11.18"
        );
    }

    #[test]
    fn serializes_amount_as_exact_string() {
        let json = serde_json::to_string(&cny("1234.50")).unwrap();
        assert_eq!(json, r#"{"amount":"1234.50","currency":"CNY"}"#);
        let back: Money = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cny("1234.50"));
    }

    proptest! {
        #[test]
        fn minor_units_round_trip(minor in -1_000_000_000_000i64..1_000_000_000_000i64) {
            let m = Money::from_minor(minor, Currency::Cny);
            prop_assert_eq!(m.to_minor().unwrap(), minor);
        }

        #[test]
        fn display_parses_back(minor in 0i64..1_000_000_000_000i64) {
            let m = Money::from_minor(minor, Currency::Cny);
            let shown = m.to_string();
            prop_assert_eq!(Money::parse(&shown, Currency::Usd).unwrap(), m);
            let plain = m.amount_string();
            prop_assert_eq!(Money::parse(&plain, Currency::Cny).unwrap(), m);
        }

        #[test]
        fn grouping_is_either_all_right_or_refused(int in 0u64..10_000_000_000u64, cut in 1usize..4) {
            // Well-formed grouping always parses; a comma at any other place never does.
            let plain = int.to_string();
            let mut grouped = String::new();
            for (i, c) in plain.chars().enumerate() {
                if i > 0 && (plain.len() - i) % 3 == 0 { grouped.push(','); }
                grouped.push(c);
            }
            prop_assert_eq!(Money::parse(&grouped, Currency::Cny).unwrap().amount(), Decimal::from(int));
            // One comma `cut` digits from the end is right only three digits
            // from the end with at most three before it ("1,000").
            if plain.len() > cut && (cut != 3 || plain.len() - cut > 3) {
                let bad = format!("{},{}", &plain[..plain.len() - cut], &plain[plain.len() - cut..]);
                prop_assert!(Money::parse(&bad, Currency::Cny).is_err(), "{} parsed", bad);
            }
        }
    }
}
