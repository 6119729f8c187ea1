//! Generates the ONNX protobuf types (`$OUT_DIR/onnx.rs`) from `proto/onnx.proto`.
//!
//! Why this path:
//! * **prost** types: `bytes` fields are generated as `bytes::Bytes` (`.bytes(["."])`), and
//!   prost decodes them from a `Bytes` buffer by slicing it, not copying. Decoding a model
//!   from `Bytes::from_owner(Mmap)` therefore leaves every initializer's `raw_data` pointing
//!   into the mapped file: a multi-GB model is not copied into memory to be read.
//! * The types are plain structs (public fields, `Default`, `PartialEq`), easy to build and
//!   compare; the same types encode, so the ONNX writer needs nothing more.
//! * No dependency on the `protobuf` crate, whose generated code pins `protobuf =3.4.0`.
//!
//! Why a vendored `protoc` (`protoc-bin-vendored`): builds must work offline and on machines
//! without a system protoc; nothing is downloaded at build time.
//!
//! `proto/onnx.proto` is ONNX's own schema (IR version 10), as shipped in the `onnx-protobuf`
//! crate 0.2.3 (`protos/onnx.proto`), unchanged.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    println!("cargo:rerun-if-changed=build.rs");
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    config.bytes(["."]);
    config.compile_protos(&["proto/onnx.proto"], &["proto"])?;
    Ok(())
}
