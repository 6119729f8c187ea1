//! HF folders as people have them: sharded weights, f16 and bf16.

mod common;

use std::collections::BTreeMap;

use common::{copy_fixture, fixture};
use safetensors::tensor::{Dtype, TensorView};

/// Rewrites `llama-mha`'s weights into two shards of `dtype` with an index.
fn sharded_copy(dtype: Dtype) -> tempfile::TempDir {
    let dir = copy_fixture("llama-mha");
    let bytes = std::fs::read(fixture("llama-mha/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    type Shard = BTreeMap<String, (Vec<usize>, Vec<u8>)>;
    let mut shards: [Shard; 2] = Default::default();
    let mut weight_map = serde_json::Map::new();
    for (k, (name, view)) in st.tensors().into_iter().enumerate() {
        let values = view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()));
        let data: Vec<u8> = match dtype {
            Dtype::F16 => values.flat_map(|v| half::f16::from_f32(v).to_le_bytes()).collect(),
            Dtype::BF16 => values.flat_map(|v| half::bf16::from_f32(v).to_le_bytes()).collect(),
            _ => unreachable!(),
        };
        let shard = k % 2;
        weight_map.insert(name.clone(), format!("model-0000{}-of-00002.safetensors", shard + 1).into());
        shards[shard].insert(name, (view.shape().to_vec(), data));
    }
    for (s, shard) in shards.iter().enumerate() {
        let views: Vec<(String, TensorView)> =
            shard.iter().map(|(n, (shape, d))| (n.clone(), TensorView::new(dtype, shape.clone(), d).unwrap())).collect();
        let path = dir.path().join(format!("model-0000{}-of-00002.safetensors", s + 1));
        safetensors::serialize_to_file(views, None, &path).unwrap();
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    dir
}

fn check(dtype: Dtype, round: fn(f32) -> f32) {
    let dir = sharded_copy(dtype);
    let model = prunec_frontends::load(dir.path()).expect("sharded folder loads");
    let reference = prunec_frontends::load(&fixture("llama-mha")).unwrap();
    assert_eq!(model.params.len(), reference.params.len());
    for (name, p) in reference.params.iter() {
        let got = model.params.read_f32(name).unwrap();
        let want = reference.params.read_f32(name).unwrap();
        assert_eq!(model.params.get(name).unwrap().shape, p.shape);
        assert!(got.iter().zip(want.iter()).all(|(g, w)| *g == round(*w)), "{name}");
    }
}

#[test]
fn sharded_f16_weights_read_as_f32() {
    check(Dtype::F16, |v| half::f16::from_f32(v).to_f32());
}

#[test]
fn sharded_bf16_weights_read_as_f32() {
    check(Dtype::BF16, |v| half::bf16::from_f32(v).to_f32());
}
