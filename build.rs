// rustc links with --as-needed, which drops libtorch_cuda because no symbol of it is
// referenced directly; without it libtorch never registers its CUDA backend and
// tch::Cuda::is_available() is false on a GPU machine. Force it when the library exists.
use std::path::PathBuf;

fn main() {
    // The Japanese front-end calls libmecab (MeCab 0.996) through its C API; Debian/Ubuntu
    // ship it as libmecab-dev (tools/setup installs it).
    println!("cargo:rustc-link-lib=dylib=mecab");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Some(dir) = libtorch_lib_dir() {
        if dir.join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-search=native={}", dir.display());
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
    }
}

/// The libtorch library folder: $LIBTORCH/lib, or torch/lib of the python on PATH
/// (LIBTORCH_USE_PYTORCH=1, the way torch-sys finds it too).
fn libtorch_lib_dir() -> Option<PathBuf> {
    if let Ok(root) = std::env::var("LIBTORCH") {
        return Some(PathBuf::from(root).join("lib"));
    }
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import torch, os; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(PathBuf::from(String::from_utf8(out.stdout).ok()?.trim()))
}
