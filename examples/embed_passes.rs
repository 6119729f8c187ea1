//! prunec's passes inside another compiler: build a small graph with the IR's API (no model
//! file), find its dependency groups, score them, prune half of the MLP channels and read the
//! result back.
//!
//! ```sh
//! cargo run --example embed_passes
//! ```

use prunec_ir::{BinaryOp, DType, Dim, Graph, Model, ModelInfo, Op, Param, ParamStore, Shape, UnaryOp, ValueType};
use prunec_passes::prune::{apply, select, Allocate, Amount, Gqa, Mode, PruneOptions};
use prunec_passes::score::{score, Aggregation, Importance};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (vocab, hidden, inner) = (32, 8, 6);
    // parameters, here from a formula; a real compiler passes its own
    let mut params = ParamStore::new();
    let mut add = |name: &str, shape: &[usize]| -> Result<ValueType, prunec_ir::IrError> {
        let n: usize = shape.iter().product();
        let values = (0..n).map(|i| ((i * 37 % 17) as f32 - 8.0) / 10.0).collect();
        params.insert(name, Param::owned(shape.to_vec(), values)?);
        Ok(ValueType::new(DType::F32, Shape::fixed(shape)))
    };
    let table = add("embed", &[vocab, hidden])?;
    let up = add("up", &[inner, hidden])?;
    let down = add("down", &[hidden, inner])?;
    let head = add("head", &[vocab, hidden])?;

    // ids → embedding → x + down(silu(up(x))) → head → logits
    let mut g = Graph::new();
    let ids_ty = ValueType::new(DType::I64, Shape(vec![Dim::batch(), Dim::seq()]));
    let ids = g.add_value(Op::Input { name: "input_ids".into(), ty: ids_ty }, "input_ids", None, &[])?;
    let table = g.add_value(Op::Param { name: "embed".into(), ty: table }, "embed", None, &[])?;
    let x = g.add_value(Op::Embedding, "embed", None, &[table, ids])?;
    let up = g.add_value(Op::Param { name: "up".into(), ty: up }, "up", Some(0), &[])?;
    let h = g.add_value(Op::Linear, "mlp.up", Some(0), &[x, up])?;
    let h = g.add_value(Op::Unary(UnaryOp::Silu), "mlp.act", Some(0), &[h])?;
    let down = g.add_value(Op::Param { name: "down".into(), ty: down }, "down", Some(0), &[])?;
    let h = g.add_value(Op::Linear, "mlp.down", Some(0), &[h, down])?;
    let x = g.add_value(Op::Binary(BinaryOp::Add), "residual", Some(0), &[x, h])?;
    let head = g.add_value(Op::Param { name: "head".into(), ty: head }, "head", None, &[])?;
    let logits = g.add_value(Op::Linear, "head", None, &[x, head])?;
    g.add(Op::Output { name: "logits".into() }, "logits", None, &[logits])?;
    let mut model = Model { graph: g, params, info: ModelInfo { name: "toy".into(), ..ModelInfo::default() }, groups: None };
    prunec_ir::verify(&model)?;

    // group: the MLP channels and the hidden channels, found from the ops' axis mappings
    let outcome = prunec_passes::run_group(&mut model)?;
    print!("{}", outcome.summary);

    // score by magnitude (no gradients needed) and prune half the MLP channels
    let scores = score(&model, None, Importance::L2, Aggregation::Sum, 0)?;
    let opts = PruneOptions { amount: Amount::UnitRatio(0.5), mode: Mode::Block, attn_layers: None, mlp_layers: None, allocate: Allocate::Uniform, gqa: Gqa::KvHeads, round_to: 1, uniform: false };
    let selection = select(&model, &scores, &opts)?;
    let report = apply(&mut model, &selection)?;
    print!("{}", report.summary());

    let up = model.params.get("up").ok_or("no `up`")?;
    let down = model.params.get("down").ok_or("no `down`")?;
    println!("up {:?}, down {:?}", up.shape, down.shape);
    assert_eq!((up.shape.as_slice(), down.shape.as_slice()), ([3, 8].as_slice(), [8, 3].as_slice()));
    Ok(())
}
