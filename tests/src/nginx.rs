//! Debian's nginx (`/usr/sbin/nginx`) run by a test with a server block taken from the README, so
//! the configuration a reader copies is the one the tests run.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where Debian's nginx package puts the binary.
pub const NGINX: &str = "/usr/sbin/nginx";

/// The README's ```` ```nginx ```` block that starts with `first_line`, without its fences.
pub fn readme_block(first_line: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let marker = format!("```nginx\n{first_line}");
    let start = readme.find(&marker).unwrap_or_else(|| panic!("no README block {marker:?}"))
        + "```nginx\n".len();
    let end = readme[start..].find("```").expect("end of the README's block");
    readme[start..start + end].to_owned()
}

/// A running nginx, killed when dropped.
pub struct Nginx {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
}

impl Nginx {
    /// Starts nginx in the foreground with `server` (README text, TLS lines already replaced by
    /// `listen 127.0.0.1:PORT;` for a port of `addr`) inside the few lines a whole nginx.conf
    /// needs, every path in `prefix`; waits until it listens.
    pub fn start(prefix: &Path, addr: SocketAddr, server: &str) -> Self {
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} is missing: run scripts/test.sh, which installs Debian's nginx package"
        );
        std::fs::create_dir_all(prefix).expect("nginx prefix");
        let p = prefix.display();
        let conf = prefix.join("nginx.conf");
        let text = format!(
            "daemon off;
worker_processes 1;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {p}/body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
{server}}}
"
        );
        std::fs::write(&conf, text).expect("nginx.conf");
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(prefix)
            .arg("-e")
            .arg(prefix.join("error.log"))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nginx");
        let nginx = Self { child, addr };
        crate::wait_for(Duration::from_secs(10), "nginx to listen", || {
            TcpStream::connect(addr).ok()
        });
        nginx
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // An nginx that already exited makes these fail harmlessly.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
