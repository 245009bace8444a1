//! Reading the words of a command into a [`Command`]: the verb first, then
//! each family of verbs by its own function.

use chrono::Duration;

use super::{
    AlertRef, AmountText, Command, CommandError, MAX_SILENCE_DAYS, MatchOp, Matcher, Page, Target,
    Verb, When,
};
use crate::domain::duration;
use crate::domain::model::{AccountId, ExternalId};
use crate::domain::money::Currency;
use crate::domain::request::{PaymentMethod, RequestId};

/// One command's verb and the words after it, with what every family
/// needs to refuse them.
struct Args<'a> {
    verb: Verb,
    args: Vec<&'a str>,
}

impl Args<'_> {
    fn fail(&self, message: String) -> CommandError {
        CommandError {
            verb: Some(self.verb),
            message,
        }
    }

    /// At most `n` words after the verb.
    fn at_most(&self, n: usize) -> Result<(), CommandError> {
        if self.args.len() > n {
            Err(self.fail(match n {
                0 if self.verb.parameters().is_empty() => {
                    format!("{} takes no arguments", self.verb.name())
                }
                _ => format!("unexpected {:?}", self.args[n..].join(" ")),
            }))
        } else {
            Ok(())
        }
    }

    /// Takes `page=N` out of the words, wherever it stands: the first page
    /// if it is not there. `page` is never a label here, so a label of that
    /// name cannot be asked for by `balance`.
    fn take_page(&mut self) -> Result<Page, CommandError> {
        let mut found = None;
        for (i, w) in self.args.iter().enumerate() {
            if let Some((key, value)) = w.split_once('=')
                && key.eq_ignore_ascii_case("page")
            {
                if found.is_some() {
                    return Err(self.fail("page= given twice".into()));
                }
                let page = value
                    .parse::<u32>()
                    .ok()
                    .and_then(Page::new)
                    .ok_or_else(|| {
                        self.fail(format!(
                            "{w:?}: write page=2 for the second page, and so on"
                        ))
                    })?;
                found = Some((i, page));
            }
        }
        Ok(match found {
            Some((i, page)) => {
                self.args.remove(i);
                page
            }
            None => Page::FIRST,
        })
    }

    fn account(&self, text: &str) -> Result<AccountId, CommandError> {
        AccountId::parse(text).map_err(|e| self.fail(e.to_string()))
    }
}

/// Parses the text after the platform's trigger. Empty text asks for help.
pub fn parse(text: &str) -> Result<Command, CommandError> {
    let mut words = text.split_whitespace();
    let Some(first) = words.next() else {
        return Ok(Command::Help { topic: None });
    };
    let verb = Verb::parse(first).ok_or_else(|| CommandError {
        verb: None,
        message: match suggest(first) {
            Some(v) => format!("unknown command {first:?}; did you mean {:?}?", v.name()),
            None => format!("unknown command {first:?}"),
        },
    })?;
    let a = Args {
        verb,
        args: words.collect(),
    };
    match verb {
        Verb::Balance
        | Verb::Runway
        | Verb::Expiring
        | Verb::Alerts
        | Verb::Silences
        | Verb::Whoami
        | Verb::Escalations
        | Verb::Oncall
        | Verb::Help => questions(a),
        Verb::Ack | Verb::Silence | Verb::Unsilence => quieting(&a),
        Verb::SetBalance
        | Verb::Topup
        | Verb::Allocate
        | Verb::Renew
        | Verb::Pay
        | Verb::Autorenew => requests(&a),
        Verb::Requests
        | Verb::Request
        | Verb::Cancel
        | Verb::Approve
        | Verb::Deny
        | Verb::Resolve => decisions(&a),
    }
}

/// Questions: balances, runway, what expires, alerts, silences, who is
/// asked, on call, help.
fn questions(mut a: Args<'_>) -> Result<Command, CommandError> {
    let page = match a.verb {
        Verb::Balance | Verb::Runway | Verb::Expiring | Verb::Alerts => a.take_page()?,
        _ => Page::FIRST,
    };
    let a = &a;
    let (verb, args) = (a.verb, a.args.as_slice());
    let fail = |message: String| a.fail(message);
    let at_most = |n: usize| a.at_most(n);
    let account = |text: &str| a.account(text);
    let command = match verb {
        Verb::Balance => {
            at_most(1)?;
            let target = match args.first() {
                None => None,
                Some(a) => match a.split_once('=') {
                    Some((name, value)) => {
                        let m = Matcher::parse(a).map_err(&fail)?;
                        if m.op != MatchOp::Eq || name.trim().is_empty() || value.is_empty() {
                            return Err(fail(format!("{a:?}: write label=value")));
                        }
                        Some(Target::Label {
                            name: m.label,
                            value: m.value,
                        })
                    }
                    None => Some(Target::Account(account(a)?)),
                },
            };
            Command::Balance { target, page }
        }
        Verb::Runway => {
            at_most(1)?;
            Command::Runway {
                account: args.first().map(|a| account(a)).transpose()?,
                page,
            }
        }
        Verb::Expiring => {
            at_most(1)?;
            let days = match args.first() {
                None => 30,
                Some(a) => days(a).map_err(&fail)?,
            };
            Command::Expiring { days, page }
        }
        Verb::Alerts => {
            at_most(0)?;
            Command::Alerts { page }
        }
        Verb::Silences => {
            at_most(0)?;
            Command::Silences
        }
        Verb::Whoami => {
            at_most(0)?;
            Command::Whoami
        }
        Verb::Escalations => {
            at_most(0)?;
            Command::Escalations
        }
        Verb::Oncall => match args.first() {
            None => Command::Oncall { schedule: None },
            Some(w) if w.eq_ignore_ascii_case("override") => {
                override_of(&args[1..]).map_err(&fail)?
            }
            Some(schedule) => {
                at_most(1)?;
                Command::Oncall {
                    schedule: Some((*schedule).to_owned()),
                }
            }
        },
        Verb::Help => {
            at_most(1)?;
            let topic = match args.first() {
                None => None,
                Some(w) => Some(Verb::parse(w.trim_start_matches('/')).ok_or_else(|| {
                    fail(match suggest(w) {
                        Some(v) => {
                            format!("no command {w:?}; did you mean {:?}?", v.name())
                        }
                        None => format!("no command {w:?}"),
                    })
                })?),
            };
            Command::Help { topic }
        }
        // `parse` hands each family only its own verbs.
        other => return Err(a.fail(format!("{} is not read here", other.name()))),
    };
    Ok(command)
}

/// Acknowledging and silencing alerts.
fn quieting(a: &Args<'_>) -> Result<Command, CommandError> {
    let (verb, args) = (a.verb, a.args.as_slice());
    let fail = |message: String| a.fail(message);
    let at_most = |n: usize| a.at_most(n);
    let command = match verb {
        Verb::Ack => {
            at_most(1)?;
            let id = args
                .first()
                .ok_or_else(|| fail("which alert? give its id".into()))?;
            Command::Ack {
                alert: AlertRef::parse(id).map_err(&fail)?,
            }
        }
        Verb::Silence => {
            let (Some(matchers), Some(duration)) = (args.first(), args.get(1)) else {
                return Err(fail(
                    "give what to silence and for how long, e.g. silence env=dev 24h".into(),
                ));
            };
            let matchers = Matcher::parse_list(matchers).map_err(&fail)?;
            let duration =
                duration::parse_at_most(duration, Duration::days(MAX_SILENCE_DAYS), "a silence")
                    .map_err(|e| fail(format!("{e}; a forgotten one hides real trouble")))?;
            if duration <= Duration::zero() {
                return Err(fail("a silence must last more than 0s".into()));
            }
            let reason = unquote(&args[2..].join(" "));
            Command::Silence {
                matchers,
                duration,
                reason: (!reason.is_empty()).then_some(reason),
            }
        }
        Verb::Unsilence => {
            at_most(1)?;
            let id = args
                .first()
                .ok_or_else(|| fail("which silence? give its number".into()))?;
            let id = id
                .trim_start_matches('#')
                .parse::<u64>()
                .map_err(|_| fail(format!("{id:?} is not a silence number")))?;
            Command::Unsilence { id }
        }
        // `parse` hands each family only its own verbs.
        other => return Err(a.fail(format!("{} is not read here", other.name()))),
    };
    Ok(command)
}

/// Money moving: balances entered by hand, top-ups, renewals, orders
/// paid, auto-renewal.
fn requests(a: &Args<'_>) -> Result<Command, CommandError> {
    let (verb, args) = (a.verb, a.args.as_slice());
    let fail = |message: String| a.fail(message);
    let account = |text: &str| a.account(text);
    let command = match verb {
        Verb::SetBalance => {
            let Some(a) = args.first() else {
                return Err(fail("give the account and its balance".into()));
            };
            let account = account(a)?;
            let mut part = None;
            let mut words = Vec::new();
            for w in &args[1..] {
                let named = match w.strip_prefix("contract=") {
                    Some("unallocated") => Some(crate::domain::model::EnteredBucket::Unallocated),
                    Some(n) => {
                        Some(crate::domain::model::EnteredBucket::contract(n).map_err(fail)?)
                    }
                    None if w.eq_ignore_ascii_case("unallocated") => {
                        Some(crate::domain::model::EnteredBucket::Unallocated)
                    }
                    None => {
                        words.push(*w);
                        None
                    }
                };
                if named.is_some() {
                    if part.is_some() {
                        return Err(fail("give one contract, or unallocated".into()));
                    }
                    part = named;
                }
            }
            // "1,000 CNY" is two words.
            let text = words.join(" ");
            if text.is_empty() {
                return Err(fail(format!("give {account}'s balance, e.g. 12,000")));
            }
            let amount = AmountText::parse(&text).map_err(|e| fail(e.to_string()))?;
            Command::SetBalance {
                account,
                amount,
                part,
            }
        }
        Verb::Topup | Verb::Allocate => {
            let Some(a) = args.first() else {
                return Err(fail("give the account and the amount".into()));
            };
            let account = account(a)?;
            let Some(amount) = args.get(1) else {
                return Err(fail(format!("give the amount for {account}, e.g. 10,000")));
            };
            // "10,000 CNY" is two words.
            let mut next = 2;
            let mut amount_text = (*amount).to_owned();
            if let Some(code) = args.get(2).filter(|w| Currency::from_code(w).is_some()) {
                amount_text = format!("{amount} {code}");
                next = 3;
            }
            let amount =
                AmountText::parse_positive(&amount_text).map_err(|e| fail(e.to_string()))?;
            if verb == Verb::Topup {
                let method = args.get(next).and_then(|w| PaymentMethod::parse(w));
                if method.is_some() {
                    next += 1;
                }
                Command::Topup {
                    account,
                    amount,
                    method,
                    reason: reason(&args[next.min(args.len())..]),
                }
            } else {
                let Some(contract) = args.get(next) else {
                    return Err(fail(
                        "give the contract to allocate to, e.g. COC-2024-7891".into(),
                    ));
                };
                Command::Allocate {
                    account,
                    amount,
                    contract: (*contract).to_owned(),
                    reason: reason(&args[next + 1..]),
                }
            }
        }
        Verb::Renew => {
            let (Some(list), Some(period)) = (args.first(), args.get(1)) else {
                return Err(fail(
                    "give what to renew and for how long, e.g. renew ins-abc 1m".into(),
                ));
            };
            Command::Renew {
                resources: ids(list, "resource").map_err(&fail)?,
                months: months(period).map_err(&fail)?,
                reason: reason(&args[2..]),
            }
        }
        Verb::Pay => {
            let Some(first) = args.first() else {
                return Err(fail("which order? give its id".into()));
            };
            let mut orders = ids(first, "order").map_err(&fail)?;
            let (mut coupons, mut discount) = (Vec::new(), None);
            let mut rest = &args[1..];
            while let Some(w) = rest.first() {
                if let Some(c) = w.strip_prefix("coupon=") {
                    coupons.push(c.to_owned());
                } else if let Some(d) = w.strip_prefix("discount=") {
                    if discount.replace(d.to_owned()).is_some() {
                        return Err(fail(
                            "one discount at most: discount kinds cannot be combined".into(),
                        ));
                    }
                } else if coupons.is_empty() && discount.is_none() && looks_like_id(w) {
                    // `pay o1 o2` as well as `pay o1,o2`.
                    orders.extend(ids(w, "order").map_err(&fail)?);
                } else {
                    break;
                }
                rest = &rest[1..];
            }
            if coupons.iter().chain(discount.iter()).any(|c| c.is_empty()) {
                return Err(fail("give the coupon's or discount's id after =".into()));
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(dup) = orders.iter().find(|o| !seen.insert(*o)) {
                return Err(fail(format!("order {dup} is given twice")));
            }
            Command::Pay {
                orders,
                coupons,
                discount,
                reason: reason(rest),
            }
        }
        Verb::Autorenew => {
            let (Some(r), Some(setting)) = (args.first(), args.get(1)) else {
                return Err(fail("give the resource and on or off".into()));
            };
            let on = match setting.to_ascii_lowercase().as_str() {
                "on" | "true" | "yes" | "enable" => true,
                "off" | "false" | "no" | "disable" => false,
                other => return Err(fail(format!("{other:?}: write on or off"))),
            };
            Command::Autorenew {
                resource: ExternalId::parse(r).map_err(|e| fail(e.to_string()))?,
                on,
                reason: reason(&args[2..]),
            }
        }
        // `parse` hands each family only its own verbs.
        other => return Err(a.fail(format!("{} is not read here", other.name()))),
    };
    Ok(command)
}

/// Requests and the decisions on them: listed, shown, cancelled,
/// approved, denied, resolved.
fn decisions(a: &Args<'_>) -> Result<Command, CommandError> {
    let (verb, args) = (a.verb, a.args.as_slice());
    let fail = |message: String| a.fail(message);
    let at_most = |n: usize| a.at_most(n);
    let command = match verb {
        Verb::Requests => {
            at_most(1)?;
            let all = match args.first() {
                None => false,
                Some(w) if w.eq_ignore_ascii_case("all") => true,
                Some(w) => return Err(fail(format!("{w:?}: write requests, or requests all"))),
            };
            Command::Requests { all }
        }
        Verb::Request | Verb::Cancel | Verb::Approve | Verb::Deny | Verb::Resolve => {
            let Some(first) = args.first() else {
                return Err(fail("which request? give its id, e.g. R12".into()));
            };
            let id = RequestId::parse(first).map_err(&fail)?;
            match verb {
                Verb::Request => {
                    at_most(1)?;
                    Command::Request { id }
                }
                Verb::Cancel => {
                    at_most(1)?;
                    Command::Cancel { id }
                }
                Verb::Approve => {
                    at_most(2)?;
                    let code = match args.get(1) {
                        None => None,
                        Some(c) if c.len() == 6 && c.chars().all(|d| d.is_ascii_digit()) => {
                            Some((*c).to_owned())
                        }
                        Some(c) => {
                            return Err(fail(format!(
                                "{c:?} is not an authenticator code; codes are 6 digits"
                            )));
                        }
                    };
                    Command::Approve { id, code }
                }
                Verb::Resolve => {
                    let done = match args.get(1).map(|w| w.to_ascii_lowercase()) {
                        Some(w) if w == "done" => true,
                        Some(w) if w == "failed" => false,
                        Some(_) => {
                            return Err(fail(format!(
                                "{:?}: say done (the cloud shows it carried out) or failed (it does not)",
                                args[1]
                            )));
                        }
                        None => {
                            return Err(fail(
                                "done or failed? say what the cloud's console shows".into(),
                            ));
                        }
                    };
                    Command::Resolve {
                        id,
                        done,
                        note: reason(&args[2..]),
                    }
                }
                _ => Command::Deny {
                    id,
                    reason: reason(&args[1..]),
                },
            }
        }
        // `parse` hands each family only its own verbs.
        other => return Err(a.fail(format!("{} is not read here", other.name()))),
    };
    Ok(command)
}

/// The rest of the words as a reason, unquoted; `None` when there are none.
/// `<schedule> <person> <from> <until> [reason]` after `oncall override`.
fn override_of(args: &[&str]) -> Result<Command, String> {
    let example =
        "e.g. oncall override ops bo 2026-11-25 2026-11-26, or oncall override ops bo now 8h";
    let (Some(schedule), Some(person)) = (args.first(), args.get(1)) else {
        return Err(format!(
            "give the schedule, the person, from and until; {example}"
        ));
    };
    let mut rest = &args[2..];
    let from = when(&mut rest, false).map_err(|e| format!("from: {e}; {example}"))?;
    let until = when(&mut rest, true).map_err(|e| format!("until: {e}; {example}"))?;
    Ok(Command::Override {
        schedule: (*schedule).to_owned(),
        person: (*person).to_owned(),
        from,
        until,
        reason: reason(rest),
    })
}

/// Takes one moment off the front of `words`: `now` (a start only), a span
/// such as `8h` (an end only), a date, or a date and a time as one word or two.
fn when(words: &mut &[&str], end: bool) -> Result<When, String> {
    let Some(first) = words.first() else {
        return Err("missing".to_owned());
    };
    *words = &words[1..];
    if first.eq_ignore_ascii_case("now") {
        return if end {
            Err("\"now\" is a start; give a date or a span such as 8h".to_owned())
        } else {
            Ok(When::Now)
        };
    }
    if !first.contains('-') {
        if !end {
            return Err(format!(
                "{first:?} is not a date; write now or e.g. 2026-11-25"
            ));
        }
        let d = duration::parse_at_most(
            first,
            Duration::days(crate::domain::oncall::MAX_OVERRIDE_DAYS),
            "an override",
        )
        .map_err(|e| format!("{e}; change the rotation in the config for longer"))?;
        if d <= Duration::zero() {
            return Err("give a span longer than 0s".to_owned());
        }
        return Ok(When::After(d));
    }
    let mut text = (*first).to_owned();
    // `2026-11-25 09:00`: the time is the next word.
    if let Some(time) = words
        .first()
        .filter(|w| crate::domain::calendar::parse_minute(w).is_ok())
    {
        text = format!("{first}T{time}");
        *words = &words[1..];
    }
    let (date, minute) = crate::domain::calendar::parse_wall(&text)?;
    Ok(When::Wall(date, minute))
}

fn reason(words: &[&str]) -> Option<String> {
    let r = unquote(&words.join(" "));
    (!r.is_empty()).then_some(r)
}

/// Whether a word reads as an id rather than the start of a reason: it has
/// a digit in it.
fn looks_like_id(word: &str) -> bool {
    word.chars().any(|c| c.is_ascii_digit())
}

/// `ins-a` or `ins-a,ins-b`: distinct ids.
fn ids(text: &str, kind: &str) -> Result<Vec<ExternalId>, String> {
    let mut out: Vec<ExternalId> = Vec::new();
    for part in text.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!("{text:?}: an empty {kind} id between commas"));
        }
        let id = ExternalId::parse(part).map_err(|e| e.to_string())?;
        if out.contains(&id) {
            return Err(format!("{kind} {id} is given twice"));
        }
        out.push(id);
    }
    Ok(out)
}

/// A renewal period: `1`, `6m`, `1y`, `2 years` written as `2y`: whole
/// months, 1 to 60. Minutes make no sense here, so `m` is months.
fn months(text: &str) -> Result<u32, String> {
    let t = text.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u32 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a period; write e.g. 1m, 6m or 1y"))?;
    let per = match unit {
        "" | "m" | "mo" | "mon" | "month" | "months" => 1,
        "y" | "yr" | "year" | "years" => 12,
        _ => return Err(format!("{text:?}: give months (6m) or years (1y)")),
    };
    let months = n.saturating_mul(per);
    if !(1..=60).contains(&months) {
        return Err(format!("{text:?}: give 1 month to 5 years"));
    }
    Ok(months)
}

/// `30`, `30d` or `2w`: whole days, 1 to 366.
fn days(text: &str) -> Result<u32, String> {
    let n = match text.parse::<u32>() {
        Ok(n) => i64::from(n),
        Err(_) => {
            let d = duration::parse(text)
                .map_err(|_| format!("{text:?} is not a number of days; write e.g. 30 or 2w"))?;
            if d.num_seconds() % 86_400 != 0 {
                return Err(format!("{text:?}: give whole days"));
            }
            d.num_days()
        }
    };
    if !(1..=366).contains(&n) {
        return Err(format!("{text:?}: give 1 to 366 days"));
    }
    Ok(n as u32)
}

/// Drops one pair of surrounding quotes, straight or curly (phones type curly).
fn unquote(text: &str) -> String {
    let t = text.trim();
    for (open, close) in [('"', '"'), ('\'', '\''), ('“', '”'), ('‘', '’')] {
        if let Some(inner) = t.strip_prefix(open).and_then(|s| s.strip_suffix(close)) {
            return inner.trim().to_owned();
        }
    }
    t.to_owned()
}

/// The command a mistyped word was probably meant to be.
fn suggest(word: &str) -> Option<Verb> {
    let word = word.to_ascii_lowercase();
    Verb::ALL
        .into_iter()
        .map(|v| (edit_distance(&word, v.name()), v))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}
