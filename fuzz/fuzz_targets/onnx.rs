//! An ONNX file, decoded and raised to the IR as `prunec MODEL.onnx` does (folding, egg rules,
//! lowering), from memory; external data is looked for in a folder that does not exist.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("/nonexistent-prunec-fuzz/model.onnx");
    if let Ok(model) = prunec_frontends::onnx::load_bytes(path, bytes::Bytes::copy_from_slice(data)) {
        let _ = prunec_ir::print(&model);
    }
});
