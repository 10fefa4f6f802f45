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

/// Every file the page needs, by exact path.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../../web/index.html"),
    },
    Asset {
        path: "/assets/theme.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/theme.js"),
    },
    Asset {
        path: "/assets/app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/app.js"),
    },
    Asset {
        path: "/assets/store.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/store.js"),
    },
    Asset {
        path: "/assets/format.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/format.js"),
    },
    Asset {
        path: "/assets/api.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/api.js"),
    },
    Asset {
        path: "/assets/charts.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/charts.js"),
    },
    Asset {
        path: "/assets/overview.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/overview.js"),
    },
    Asset {
        path: "/assets/render.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/render.js"),
    },
    Asset {
        path: "/assets/live.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/live.js"),
    },
    Asset {
        path: "/assets/feed.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/feed.js"),
    },
    Asset {
        path: "/assets/panel.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/panel.js"),
    },
    Asset {
        path: "/assets/detail.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web/detail.js"),
    },
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
