//! llama.cpp's permutation of the q/k projection rows of LLaMA-like models (for its rotary
//! embedding): [`unpermute_rows`] gives HF's row order back, [`permute_rows`] makes GGUF's.

/// Checks the arguments of [`unpermute_rows`]/[`permute_rows`]; returns rows per half-head.
fn permute_geometry(len: usize, n_head: usize, rows: usize, cols: usize) -> std::result::Result<usize, String> {
    let per_head = n_head.checked_mul(2).filter(|&p| p > 0 && rows.is_multiple_of(p) && rows > 0);
    if per_head.is_none() {
        return Err(format!("{rows} rows cannot be split into {n_head} heads of two halves"));
    }
    if rows.checked_mul(cols) != Some(len) {
        return Err(format!("{len} values are not {rows} x {cols}"));
    }
    Ok(rows / n_head / 2)
}

/// Maps every row: `out[dst(r)] = data[r]` or `out[r] = data[src(r)]`.
fn gather_rows(data: &[f32], rows: usize, cols: usize, src_row: impl Fn(usize) -> usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let s = src_row(r) * cols;
        out.extend_from_slice(data.get(s..s + cols).unwrap_or(&[]));
    }
    out
}

/// Undoes llama.cpp's convert_hf_to_gguf.py `permute` of q/k projection rows (for rotary),
/// giving HF's row order. `data` is `rows x cols`, row-major (numpy order, as
/// [`GgufFile::dequantize`](super::GgufFile::dequantize) returns it); `n_head` is `head_count`
/// for `attn_q` and `head_count_kv` for `attn_k`. Inconsistent arguments (no heads, rows not a
/// multiple of `2 * n_head`, a wrong length) are an error.
pub fn unpermute_rows(
    data: &[f32],
    n_head: usize,
    rows: usize,
    cols: usize,
) -> std::result::Result<Vec<f32>, String> {
    permute_geometry(data.len(), n_head, rows, cols)?;
    Ok(gather_rows(data, rows, cols, |r| unpermuted_source_row(r, n_head, rows)))
}

/// The GGUF row that holds HF row `r` of a q/k projection of `rows` rows permuted for
/// `n_head` heads (what [`unpermute_rows`] reads for row `r`; arguments as it checks them).
pub fn unpermuted_source_row(r: usize, n_head: usize, rows: usize) -> usize {
    let half = rows / n_head.max(1) / 2;
    // permute: HF row h*2*half + j*half + i  ->  GGUF row h*2*half + i*2 + j (j in 0..2).
    let (h, rest) = (r / (2 * half).max(1), r % (2 * half).max(1));
    let (j, i) = (rest / half.max(1), rest % half.max(1));
    h * 2 * half + i * 2 + j
}

/// The HF row that GGUF row `r` of a q/k projection permuted by [`permute_rows`] holds.
pub fn permuted_source_row(r: usize, n_head: usize, rows: usize) -> usize {
    let half = rows / n_head.max(1) / 2;
    let (h, rest) = (r / (2 * half).max(1), r % (2 * half).max(1));
    let (i, j) = (rest / 2, rest % 2);
    h * 2 * half + j * half + i
}

/// llama.cpp's convert_hf_to_gguf.py `permute` itself (HF row order to GGUF's), for writing GGUF
/// files; the inverse of [`unpermute_rows`], with the same argument checks.
pub fn permute_rows(
    data: &[f32],
    n_head: usize,
    rows: usize,
    cols: usize,
) -> std::result::Result<Vec<f32>, String> {
    permute_geometry(data.len(), n_head, rows, cols)?;
    Ok(gather_rows(data, rows, cols, |r| permuted_source_row(r, n_head, rows)))
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::gguf::tests::support::{assert_bits_eq, fixture, load_safetensors};
    use crate::gguf::GgufFile;

    /// The HF model the fixture was converted from, in the project's own fixtures.
    fn hf_llama_gqa() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/llama-gqa/model.safetensors")
    }

    #[test]
    fn llama_gqa_matches_hf_after_unpermute() {
        let hf_path = hf_llama_gqa();
        let hf = load_safetensors(&hf_path);
        let f = GgufFile::open(&fixture("llama-gqa.gguf")).unwrap();
        let (n_head, n_head_kv) = (8, 2);
        let mut compared = 0;
        for (hf_name, (shape, want)) in &hf {
            let gguf_name = match hf_name.as_str() {
                "model.embed_tokens.weight" => "token_embd.weight".to_string(),
                "model.norm.weight" => "output_norm.weight".to_string(),
                n => {
                    let rest = n.strip_prefix("model.layers.").unwrap();
                    let (i, module) = rest.split_once('.').unwrap();
                    let short = match module {
                        "input_layernorm.weight" => "attn_norm",
                        "self_attn.q_proj.weight" => "attn_q",
                        "self_attn.k_proj.weight" => "attn_k",
                        "self_attn.v_proj.weight" => "attn_v",
                        "self_attn.o_proj.weight" => "attn_output",
                        "post_attention_layernorm.weight" => "ffn_norm",
                        "mlp.gate_proj.weight" => "ffn_gate",
                        "mlp.up_proj.weight" => "ffn_up",
                        "mlp.down_proj.weight" => "ffn_down",
                        m => panic!("unexpected {m}"),
                    };
                    format!("blk.{i}.{short}.weight")
                }
            };
            let info = f.tensor_info(&gguf_name).unwrap();
            assert_eq!(&info.shape(), shape, "{gguf_name}");
            let data = f.dequantize(&gguf_name).unwrap();
            let heads = if gguf_name.ends_with("attn_q.weight") {
                Some(n_head)
            } else if gguf_name.ends_with("attn_k.weight") {
                Some(n_head_kv)
            } else {
                None
            };
            let got = match heads {
                Some(h) => {
                    let permuted = unpermute_rows(&data, h, shape[0], shape[1]).unwrap();
                    assert_ne!(permuted, data, "{gguf_name}: the permutation should move rows");
                    permuted
                }
                None => data,
            };
            assert_bits_eq(&gguf_name, &got, want);
            compared += 1;
        }
        assert_eq!(compared, f.tensors().len());
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // numpy: np.arange(8).reshape(2, 2, 2).swapaxes(1, 2).reshape(8) == [0, 2, 1, 3, 4, 6, 5, 7]
        let original: Vec<f32> = (0..8 * 3).map(|v| v as f32).collect(); // 8 rows x 3 cols
        let order = [0usize, 2, 1, 3, 4, 6, 5, 7];
        let permuted: Vec<f32> = order.iter().flat_map(|&r| original[r * 3..r * 3 + 3].to_vec()).collect();
        assert_eq!(permute_rows(&original, 2, 8, 3).unwrap(), permuted);
        assert_eq!(unpermute_rows(&permuted, 2, 8, 3).unwrap(), original);
        // round trips with several head counts
        let x: Vec<f32> = (0..48 * 5).map(|v| v as f32 * 0.5).collect();
        for h in [1, 2, 3, 4, 6, 8, 12, 24] {
            let p = permute_rows(&x, h, 48, 5).unwrap();
            assert_eq!(unpermute_rows(&p, h, 48, 5).unwrap(), x, "{h} heads");
        }
        // inconsistent arguments: errors, not panics
        assert!(unpermute_rows(&x, 0, 48, 5).is_err());
        assert!(unpermute_rows(&x, 5, 48, 5).is_err());
        assert!(unpermute_rows(&x, 2, 48, 4).is_err());
        assert!(permute_rows(&x, 7, 48, 5).is_err());
    }

    #[test]
    fn unpermute_rejects_inconsistent_arguments() {
        assert!(unpermute_rows(&[0.0; 6], 2, 3, 2).is_err());
    }
}
