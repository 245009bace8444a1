//! The runway chart as a PNG: the available balance over the runway window
//! and the forecast line from the latest balance down to zero. Drawn with
//! plotters into memory, with a font that ships in the binary (no system
//! fonts needed), and encoded with `png`.

use std::sync::OnceLock;

use chrono::{DateTime, Duration, Utc};
use plotters::prelude::*;
use plotters::style::FontStyle;
use rust_decimal::prelude::ToPrimitive;

use crate::engine::chatops::RunwayChart;

pub const WIDTH: u32 = 800;
pub const HEIGHT: u32 = 400;
/// A forecast further out than this is drawn to the edge, not to zero.
const HORIZON_DAYS: i64 = 90;

const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");

fn font_registered() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| "the bundled font could not be read".to_owned())
    })
    .clone()
}

/// Money as a plotting coordinate. Only the picture uses floats; every
/// figure written in the chart's caption comes from the decimals.
fn y(m: &crate::domain::money::Money) -> f64 {
    m.amount().to_f64().unwrap_or(0.0)
}

/// The chart as PNG bytes; `None` with no history to draw.
pub fn runway_png(chart: &RunwayChart) -> Result<Option<Vec<u8>>, String> {
    let (Some(first), Some(last)) = (chart.history.first(), chart.history.last()) else {
        return Ok(None);
    };
    font_registered()?;
    let currency = last.1.currency();
    // The forecast: from the latest balance, straight down to zero, or to
    // the horizon's edge when zero is further out.
    let forecast: Option<(DateTime<Utc>, f64)> = chart.runway_days.map(|days| {
        let days = days.to_f64().unwrap_or(0.0).max(0.0);
        let shown = days.min(HORIZON_DAYS as f64);
        let at = last.0 + Duration::seconds((shown * 86_400.0) as i64);
        let left = if days > 0.0 {
            y(&last.1) * (1.0 - shown / days)
        } else {
            0.0
        };
        (at, left)
    });
    let start = first.0;
    let mut end = forecast.map_or(last.0, |(at, _)| at.max(last.0));
    if end <= start {
        end = start + Duration::hours(1);
    }
    let top = chart
        .history
        .iter()
        .map(|(_, m)| y(m))
        .fold(0.0_f64, f64::max)
        .max(1.0)
        * 1.1;
    let bottom = chart
        .history
        .iter()
        .map(|(_, m)| y(m))
        .fold(0.0_f64, f64::min)
        * 1.1;

    let mut pixels = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<_>| format!("drawing the chart: {e:?}");
        root.fill(&WHITE).map_err(e)?;
        let caption = match chart.runway_days {
            Some(d) => format!(
                "{} · {} left · {} days of runway",
                chart.account,
                last.1,
                d.round_dp(1)
            ),
            None => format!("{} · {} left · nothing being spent", chart.account, last.1),
        };
        let span = end - start;
        // Time as hours after the first point: plotters plots numbers.
        let x = |t: DateTime<Utc>| (t - start).num_seconds() as f64 / 3600.0;
        let label = move |h: &f64| {
            let t = start + Duration::seconds((h * 3600.0) as i64);
            if span > Duration::days(2) {
                t.format("%m-%d").to_string()
            } else {
                t.format("%m-%d %H:%M").to_string()
            }
        };
        let mut c = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(90)
            .build_cartesian_2d(0.0..x(end), bottom..top)
            .map_err(e)?;
        c.configure_mesh()
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&label)
            .y_label_formatter(&|v: &f64| format!("{} {v:.0}", currency.code()))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(e)?;
        let blue = RGBColor(33, 102, 172);
        c.draw_series(LineSeries::new(
            chart.history.iter().map(|(t, m)| (x(*t), y(m))),
            blue.stroke_width(2),
        ))
        .map_err(e)?
        .label("balance")
        .legend(move |(x, yy)| PathElement::new([(x, yy), (x + 20, yy)], blue.stroke_width(2)));
        if let Some((at, left)) = forecast {
            let red = RGBColor(202, 0, 32);
            c.draw_series(DashedLineSeries::new(
                [(x(last.0), y(&last.1)), (x(at), left)],
                8,
                5,
                red.stroke_width(2),
            ))
            .map_err(e)?
            .label("forecast at the current burn")
            .legend(move |(x, yy)| PathElement::new([(x, yy), (x + 20, yy)], red.stroke_width(2)));
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 13))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(e)?;
        root.present().map_err(e)?;
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| format!("encoding the chart: {e}"))?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| format!("encoding the chart: {e}"))?;
    writer
        .finish()
        .map_err(|e| format!("encoding the chart: {e}"))?;
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::money::{Currency, Money};
    use chrono::TimeZone;
    use rust_decimal::Decimal;

    fn chart(points: &[(i64, i64)], runway: Option<&str>) -> RunwayChart {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        RunwayChart {
            account: "acme".into(),
            history: points
                .iter()
                .map(|(h, yuan)| {
                    (
                        t0 + Duration::hours(*h),
                        Money::new(Decimal::from(*yuan), Currency::Cny),
                    )
                })
                .collect(),
            runway_days: runway.map(|r| r.parse().unwrap()),
        }
    }

    fn decoded(bytes: &[u8]) -> (png::OutputInfo, Vec<u8>) {
        let mut reader = png::Decoder::new(bytes).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        (info, buf)
    }

    #[test]
    fn a_falling_balance_is_drawn_with_its_forecast() {
        let bytes = runway_png(&chart(&[(0, 9000), (24, 8000), (48, 7000)], Some("7")))
            .unwrap()
            .unwrap();
        let (info, pixels) = decoded(&bytes);
        assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
        // Both lines are there: some pixels of the balance's blue and of
        // the forecast's red.
        let has = |rgb: [u8; 3]| pixels.chunks(3).any(|p| p == rgb);
        assert!(has([33, 102, 172]), "no balance line");
        assert!(has([202, 0, 32]), "no forecast line");
    }

    #[test]
    fn odd_histories_still_draw() {
        // One point, nothing spent, a negative balance, zero already reached,
        // and a runway beyond the horizon.
        for c in [
            chart(&[(0, 500)], None),
            chart(&[(0, 100), (5, -50)], Some("0")),
            chart(&[(0, 100_000), (24, 99_990)], Some("10000")),
            chart(&[(0, 0), (1, 0)], None),
        ] {
            let bytes = runway_png(&c).unwrap().unwrap();
            assert_eq!(decoded(&bytes).0.width, WIDTH);
        }
        assert_eq!(runway_png(&chart(&[], Some("3"))).unwrap(), None);
    }
}
