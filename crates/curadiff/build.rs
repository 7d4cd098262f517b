//! Sets the cfg `headless_browser` when a headless Chromium is on PATH, so the report's
//! browser test runs where it can and is listed as ignored (never as passed) elsewhere.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(headless_browser)");
    println!("cargo::rerun-if-env-changed=PATH");
    let Some(path) = std::env::var_os("PATH") else {
        return;
    };
    let found = ["chromium-headless-shell", "chromium", "google-chrome"]
        .iter()
        .any(|name| std::env::split_paths(&path).any(|d| d.join(name).is_file()));
    if found {
        println!("cargo::rustc-cfg=headless_browser");
    }
}
