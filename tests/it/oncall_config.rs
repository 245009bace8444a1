//! `[calendar]`, `[response]`, `[[schedules]]`, `[escalation]` and
//! `[[pagers]]`: what a team writes, and each mistake located.

use std::path::Path;

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use purser::config::{Config, PagerKind};
use purser::domain::calendar::ResponseClock;
use purser::domain::escalation::Target;
use purser::domain::rules::Severity;

const BASE: &str = r#"
[store]
path = "x.db"

[[providers]]
name = "sim"
kind = "simulated"
scenario = "s.toml"

[[accounts]]
id = "acme"
provider = "sim"

[[outputs]]
name = "ops"
kind = "slack"
channel = "C1"
token = "env:HOME"

[[people]]
name = "ana"
role = "approver"
slack = "U1"

[[people]]
name = "bo"
role = "approver"
slack = "U2"
phone = "+86 138 0000 0000"
email = "bo@example.com"

[[people]]
name = "lead"
role = "admin"
slack = "U3"
"#;

const ONCALL: &str = r#"
[calendar]
zone = "Asia/Shanghai"
hours = "09:00-18:00"
days = ["mon", "tue", "wed", "thu", "fri"]
holidays = "calendars/cn-2026.toml"

[response]
A = { within = "1h" }
C = { within = "2d", clock = "always" }

[[schedules]]
name = "ops"
rotation = "weekly"
handoff = "mon 10:00"
start = "2026-11-02"
people = ["ana", "bo"]
overrides = [{ person = "lead", from = "2026-11-25", to = "2026-11-26T09:00" }]

[escalation.A]
steps = [
  { after = "15m", notify = ["oncall:ops"] },
  { after = "30m", notify = ["secondary:ops"] },
  { after = "1h", notify = ["person:lead", "pager:pd"] },
]
repeat = 2
after_ack = "4h"

[escalation.B]
steps = [{ after = "1h", notify = ["oncall:ops", "pager:og"] }]

[[pagers]]
name = "pd"
kind = "pagerduty"
routing_key = "env:HOME"

[[pagers]]
name = "og"
kind = "opsgenie"
api_key = "env:HOME"
url = "https://api.eu.opsgenie.com/"
"#;

fn with_calendar(text: &str) -> (tempfile::TempDir, Result<Config, String>) {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::create_dir(dir.path().join("calendars")).expect("a folder");
    std::fs::write(
        dir.path().join("calendars/cn-2026.toml"),
        include_str!("../../config/calendars/cn-2026.toml"),
    )
    .expect("written");
    let at = dir.path().join("purser.toml");
    let parsed = Config::parse(text, &at).map_err(|e| e.to_string());
    (dir, parsed)
}

fn bj(y: i32, m: u32, d: u32, h: u32, min: u32) -> chrono::DateTime<Utc> {
    chrono_tz::Asia::Shanghai
        .with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .expect("one instant")
        .with_timezone(&Utc)
}

#[test]
fn a_team_puts_its_calendar_rotation_and_chains_in_config() {
    let (_dir, c) = with_calendar(&format!("{BASE}{ONCALL}"));
    let c = c.expect("valid");
    let o = &c.oncall;
    let date = |s: &str| s.parse::<NaiveDate>().expect("a date");
    assert_eq!(o.calendar_years, [2026]);
    assert!(
        o.calendar.is_business_day(date("2026-10-10")),
        "make-up Saturday"
    );
    assert!(!o.calendar.is_business_day(date("2026-10-05")));
    assert_eq!(
        o.calendar.reason(date("2026-02-28")),
        Some("Spring Festival")
    );
    // The seed's targets unless said otherwise.
    assert_eq!(o.response(Severity::A).within, Duration::hours(1));
    assert_eq!(o.response(Severity::A).clock, ResponseClock::Always);
    assert_eq!(o.response(Severity::B).within, Duration::hours(4));
    assert_eq!(o.response(Severity::B).clock, ResponseClock::Working);
    assert_eq!(o.response(Severity::C).clock, ResponseClock::Always);
    // The rotation and its override from config.
    let ops = o.schedule("ops").expect("ops");
    let now = |d, h| {
        ops.on_call(bj(2026, 11, d, h, 0), &o.overrides)
            .expect("someone")
            .person
    };
    assert_eq!(
        now(16, 12),
        "ana",
        "the third week from 2 November is ana's again"
    );
    assert_eq!(now(23, 12), "bo");
    assert_eq!(now(25, 12), "lead", "the override");
    assert_eq!(now(26, 12), "bo");
    let a = &o.chains[&Severity::A];
    assert_eq!(a.steps.len(), 3);
    assert_eq!(
        a.steps[2].notify,
        [Target::Person("lead".into()), Target::Pager("pd".into())]
    );
    assert_eq!((a.repeat, a.repeat_every), (2, Duration::minutes(75)));
    assert_eq!(a.after_ack, Some(Duration::hours(4)));
    assert!(!o.chains.contains_key(&Severity::C));
    assert_eq!(o.pagers.len(), 2);
    assert!(matches!(o.pagers[0].kind, PagerKind::PagerDuty { .. }));
    assert_eq!(
        o.pagers[0].url.as_str(),
        "https://events.pagerduty.com/v2/enqueue"
    );
    assert_eq!(o.pagers[1].url.as_str(), "https://api.eu.opsgenie.com/");
    let bo = c.people.iter().find(|p| p.name == "bo").expect("bo");
    assert_eq!(bo.email.as_deref(), Some("bo@example.com"));
    // Secrets stay out of what is printed.
    let home = std::env::var("HOME").unwrap_or_default();
    assert!(home.is_empty() || !format!("{:?}", o.pagers).contains(&home));
    // `config check` says what the team set up.
    let said = purser::config::describe(&c);
    for line in [
        "  schedule ops: ana, bo (weekly, Mon hand-off)",
        "  escalation A: 15m oncall:ops → 30m secondary:ops → 1h person:lead+pager:pd",
        "  escalation B: 1h oncall:ops+pager:og",
        "  pager pd: pagerduty",
        "  pager og: opsgenie",
        "  calendar Asia/Shanghai: holidays for 2026",
    ] {
        assert!(said.lines().any(|l| l == line), "{line:?} not in\n{said}");
    }
    assert!(home.is_empty() || !said.contains(&home));
}

#[test]
fn without_on_call_settings_the_seeds_targets_and_beijing_hours_apply() {
    let c = Config::parse(BASE, Path::new("conf/purser.toml")).expect("valid");
    assert_eq!(c.oncall.calendar.zone, chrono_tz::Asia::Shanghai);
    assert_eq!(
        (c.oncall.calendar.opens, c.oncall.calendar.closes),
        (540, 1080)
    );
    assert_eq!(c.oncall.response(Severity::C).within, Duration::hours(8));
    assert!(c.oncall.chains.is_empty());
}

#[test]
fn on_call_mistakes_are_located() {
    let bad = r#"
[calendar]
zone = "Beijing"
hours = "18:00-09:00"
days = ["mon", "fri", "funday"]

[response]
D = { within = "1h" }
B = { within = "0m", clock = "sometimes" }

[[schedules]]
name = "ops"
rotation = "weekly"
handoff = "mon 10:00"
start = "2026-11-03"
people = ["ana"]

[[schedules]]
name = "dba"
rotation = "fortnightly"
handoff = "10:00"
start = "2026-11-02"
people = ["ana", "zed"]

[escalation.A]
steps = [
  { after = "30m", notify = ["oncall:dba", "phone:123"] },
  { after = "15m", notify = ["pager:nope", "person:zed"] },
]
repeat = 12
repeat_every = "10m"

[[pagers]]
name = "pd"
kind = "pagerduty"

[[pagers]]
name = "x"
kind = "victorops"
"#;
    let err = Config::parse(&format!("{BASE}{bad}"), Path::new("conf/purser.toml"))
        .expect_err("refused")
        .to_string();
    for want in [
        "calendar.zone: \"Beijing\" is not an IANA time zone",
        "calendar.hours: the day must close after it opens",
        "calendar.days: \"funday\" is not a day of the week",
        "response.D: \"D\" is not a severity",
        "response.B.within: must be more than zero",
        "response.B.clock: \"sometimes\" is not a clock",
        "schedules[0].start: 2026-11-03 is a Tue, but the hand-off is on Mon",
        "schedules[1].rotation: \"fortnightly\" is not a rotation",
        "escalation.A.steps[0].notify: no schedule is named \"dba\"",
        "escalation.A.steps[0].notify: \"phone\" is not a kind of target",
        "escalation.A.steps[1].after: steps count from the alert's raise",
        "escalation.A.steps[1].notify: no pager is named \"nope\"",
        "escalation.A.steps[1].notify: \"zed\" is not in [[people]]",
        "escalation.A.repeat: repeat a chain 0 to 9 more times",
        "escalation.A.repeat_every: a round must be longer than its last step's after",
        "pagers[0].routing_key: this pager needs routing_key",
        "pagers[1].kind: \"victorops\" is not a pager kind",
    ] {
        assert!(err.contains(want), "{want:?} not in:\n{err}");
    }
    // Each is located on its line.
    assert!(err.contains("conf/purser.toml:38: calendar.zone"), "{err}");
}

#[test]
fn a_person_a_chain_may_page_must_be_reachable_by_direct_message() {
    let text = format!(
        "{BASE}\n[[people]]\nname = \"tg\"\nrole = \"viewer\"\ntelegram = \"42\"\n\n[[schedules]]\nname = \"ops\"\nrotation = \"daily\"\nhandoff = \"09:00\"\nstart = \"2026-11-02\"\npeople = [\"ana\", \"tg\"]\n\n[escalation.B]\nsteps = [{{ after = \"1h\", notify = [\"oncall:ops\"] }}]\n"
    );
    let err = Config::parse(&text, Path::new("conf/purser.toml"))
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("people.tg: an escalation may page tg, but none of their chat identities is on a platform with a chat output to send a direct message from (slack)"),
        "{err}"
    );
}

#[test]
fn holiday_file_mistakes_name_the_files_line() {
    for (file, want) in [
        (
            "years = [2026]\n[[holiday]]\nname = \"x\"\noff = \"2026-13-01\"\n",
            "line 4: \"2026-13-01\" is not a date",
        ),
        (
            "years = [2026]\n[[holiday]]\nname = \"x\"\noff = \"2027-01-01\"\n",
            "line 4: 2027-01-01 is outside the years the file covers",
        ),
        (
            "years = [2026]\n[[holiday]]\nname = \"x\"\noff = \"2026-10-07..2026-10-01\"\n",
            "line 4: \"2026-10-07..2026-10-01\" is not a range",
        ),
        (
            "years = [2026]\n[[holiday]]\nname = \"x\"\noff = \"2026-10-01\"\nwork = [\"2026-10-01\"]\n",
            "2026-10-01 is both a day off and a working day",
        ),
        ("years = []\n", "line 1: years must name the years"),
        (
            "years = [2026]\n[[holiday]]\nname = \"x\"\nof = \"2026-10-01\"\n",
            "line 4: unknown field `of`",
        ),
    ] {
        let err = purser::config::holidays(file).expect_err("refused");
        assert!(err.contains(want), "{want:?} not in {err:?}");
    }
    let text = format!("{BASE}\n[calendar]\nholidays = \"calendars/none.toml\"\n");
    let (_dir, c) = with_calendar(&text);
    let err = c.expect_err("refused");
    assert!(
        err.contains(":38: calendar.holidays: cannot read "),
        "{err}"
    );
}

/// Seed 004: A around the clock; B and C platform support 09:00–24:00 every
/// day of the year; billing 09:00–18:00 on business days; Beijing time.
#[test]
fn each_severity_names_the_calendar_its_clock_and_chain_run_on() {
    let text = format!(
        r##"{BASE}
[calendar]
zone = "Asia/Shanghai"
hours = "09:00-18:00"
holidays = "calendars/cn-2026.toml"

[calendars.platform]
hours = "09:00-24:00"
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

[response]
A = {{ within = "2h", clock = "always" }}
B = {{ within = "4h", clock = "working", calendar = "platform" }}
C = {{ within = "8h", clock = "working" }}

[escalation.B]
calendar = "platform"
steps = [{{ after = "1h", notify = ["person:ana"] }}]
"##
    );
    let (_dir, c) = with_calendar(&text);
    let c = c.expect("valid");
    let s = purser::startup::escalation_settings(&c);
    // Saturday 21 November 2026, 22:00 in Beijing: B's clock runs (until
    // midnight, then from 09:00 Sunday); C's, on business days, does not.
    let at = bj(2026, 11, 21, 22, 0);
    let b = s.response(Severity::B);
    assert_eq!(
        b.clock.add(s.calendar_of(Severity::B), at, b.within),
        bj(2026, 11, 22, 11, 0)
    );
    let cc = s.response(Severity::C);
    assert_eq!(
        cc.clock.add(s.calendar_of(Severity::C), at, cc.within),
        bj(2026, 11, 23, 17, 0)
    );
    // National Day is a holiday for billing, not for platform support.
    let holiday = "2026-10-05".parse::<NaiveDate>().unwrap();
    assert!(!s.calendar_of(Severity::C).is_business_day(holiday));
    assert!(s.calendar_of(Severity::B).is_business_day(holiday));
    assert!(purser::config::describe(&c).contains("B on calendar platform"));

    let unknown =
        with_calendar(&text.replacen("calendar = \"platform\" }", "calendar = \"platfrom\" }", 1))
            .1
            .expect_err("refused");
    assert!(
        unknown.contains("response.B.calendar: no [calendars.platfrom]; defined: platform"),
        "{unknown}"
    );
}
