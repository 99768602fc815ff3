//! Cron expressions as users write them (5 fields, weekdays 0-7) in the form the parser reads.

/// Turns a 5-field expression into the 6-field form with seconds, and standard weekday numbers
/// (0 or 7 = Sunday, 1 = Monday) into names, which the cron parser reads unambiguously.
pub fn normalize_cron(expr: &str) -> Result<String, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let mut fields: Vec<String> = match fields.len() {
        5 => std::iter::once("0")
            .chain(fields)
            .map(str::to_owned)
            .collect(),
        6 => fields.into_iter().map(str::to_owned).collect(),
        n => {
            return Err(format!(
                "has {n} fields; expected 5 (min hour day month weekday) or 6 (sec min hour day month weekday)"
            ));
        }
    };
    fields[5] = weekday_names(&fields[5])?;
    Ok(fields.join(" "))
}

fn weekday_names(field: &str) -> Result<String, String> {
    const NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
    let name = |s: &str| -> Result<String, String> {
        match s.parse::<usize>() {
            Ok(n) if n <= 7 => Ok(NAMES[n % 7].to_owned()),
            Ok(n) => Err(format!("weekday {n} is out of range 0-7")),
            Err(_) => Ok(s.to_owned()),
        }
    };
    let mut items = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        let converted = match range.split_once('-') {
            Some((a, b)) if b == "7" && a != "0" && a != "7" => {
                // `5-7` (Friday to Sunday) would wrap: split off Sunday.
                items.push("SUN".to_owned());
                format!("{}-SAT", name(a)?)
            }
            Some((a, b)) => format!("{}-{}", name(a)?, name(b)?),
            None => name(range)?,
        };
        items.push(match step {
            Some(s) => format!("{converted}/{s}"),
            None => converted,
        });
    }
    Ok(items.join(","))
}
