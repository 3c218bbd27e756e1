//! The pairing QR code for a terminal: Unicode half blocks, two modules per character cell, with
//! the quiet zone scanners need.

use qrcode::render::unicode::Dense1x2;
use qrcode::{EcLevel, QrCode};

/// Render `text` as a QR code, or `None` if it does not fit in one (it always does for a
/// pairing link, which is at most a few hundred bytes).
pub fn render(text: &str) -> Option<String> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L).ok()?;
    Some(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_pairing_link_fits_with_a_quiet_zone() {
        let link = format!("https://relay.example.net/pair#{}", "A".repeat(320));
        let qr = super::render(&link).expect("fits");
        let rows: Vec<&str> = qr.lines().collect();
        assert!(rows.len() > 20);
        // Each row is as wide as the code plus the quiet zone, and uses only block characters.
        let width = rows[0].chars().count();
        assert!(rows.iter().all(|row| row.chars().count() == width));
        assert!(
            qr.chars()
                .all(|c| matches!(c, ' ' | '█' | '▀' | '▄' | '\n'))
        );
    }
}
