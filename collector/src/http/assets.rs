//! The page's files, embedded in the binary: nothing is read from disk or fetched at run time.
//! uPlot comes from the npm registry at build time (see `build.rs`).

/// An embedded file.
pub struct Asset {
    /// Its exact URL path.
    pub path: &'static str,
    /// Its Content-Type.
    pub content_type: &'static str,
    /// Its bytes.
    pub bytes: &'static [u8],
}

/// One of the page's scripts, at `/assets/NAME`.
macro_rules! js {
    ($name:literal) => {
        Asset {
            path: concat!("/assets/", $name),
            content_type: "text/javascript; charset=utf-8",
            bytes: include_bytes!(concat!("../../web/", $name)),
        }
    };
}

/// Every file the page needs, by exact path.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../../web/index.html"),
    },
    js!("theme.js"),
    js!("app.js"),
    js!("store.js"),
    js!("format.js"),
    js!("api.js"),
    js!("charts.js"),
    js!("hosts.js"),
    js!("overview.js"),
    js!("render.js"),
    js!("live.js"),
    js!("alerts.js"),
    js!("feed.js"),
    js!("panel.js"),
    js!("detail.js"),
    js!("playback.js"),
    Asset {
        path: "/assets/style.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../web/style.css"),
    },
    Asset {
        path: "/assets/uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/uPlot.iife.min.js")),
    },
    Asset {
        path: "/assets/uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/uPlot.min.css")),
    },
];

/// The embedded file at exactly `path`.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// A strong validator for caching: the build's version plus the file's length and a checksum.
pub fn etag(asset: &Asset) -> String {
    let sum = asset.bytes.iter().fold(0u32, |h, b| h.rotate_left(5) ^ u32::from(*b));
    format!("\"{}-{}-{sum:08x}\"", env!("CARGO_PKG_VERSION"), asset.bytes.len())
}
