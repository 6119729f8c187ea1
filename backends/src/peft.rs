//! LoRA adapters as PEFT writes them, so that `peft.PeftModel.from_pretrained` loads them on
//! the base model: a folder with `adapter_model.safetensors` (keys
//! `base_model.model.{module}.lora_A.weight` / `.lora_B.weight`, f32) and
//! `adapter_config.json` (`peft_type` LORA, `task_type` CAUSAL_LM, `r`, `lora_alpha`,
//! `lora_dropout`, `target_modules`, `bias` none), written under a temporary name and renamed
//! into place.

use std::path::{Path, PathBuf};

use prunec_ir::ParamStore;

use crate::atomic::AtomicPath;
use crate::safetensors_writer::write_safetensors;
use crate::{BackendError, Result};

/// One adapter: the module it adapts (HF's module path) and its two parameters in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeftAdapter {
    /// The adapted module (`model.layers.0.self_attn.q_proj`).
    pub module: String,
    /// `A`'s parameter name (`[r, in]`).
    pub a: String,
    /// `B`'s parameter name (`[out, r]`).
    pub b: String,
}

/// What `adapter_config.json` says.
#[derive(Debug, Clone, PartialEq)]
pub struct PeftConfig {
    /// The rank.
    pub r: usize,
    /// `lora_alpha` (the output is scaled by `lora_alpha / r`).
    pub alpha: f32,
    /// `lora_dropout`.
    pub dropout: f32,
    /// The module names adapted (last components: `q_proj`...).
    pub target_modules: Vec<String>,
    /// `base_model_name_or_path`: the base model the adapters belong to.
    pub base_model: String,
}

/// The name PEFT gives `module`'s `A` (`"lora_A"`) or `B` (`"lora_B"`) in `adapter_model.safetensors`.
pub fn peft_key(module: &str, which: &str) -> String {
    format!("base_model.model.{module}.{which}.weight")
}

/// Writes `adapters` (their values from `params`) as the PEFT folder `out`, replacing an older
/// one that prunec wrote (never another folder); `inputs` (the run's inputs) are never
/// overwritten.
pub fn write_peft_adapter(
    params: &ParamStore,
    adapters: &[PeftAdapter],
    config: &PeftConfig,
    out: &Path,
    inputs: &[&Path],
) -> Result<PathBuf> {
    write_peft_adapter_replacing(params, adapters, config, out, inputs, true)
}

/// [`write_peft_adapter`], replacing an earlier prunec output at `out` when `replace`
/// (`--force`; see [`prunec_ir::output`]).
pub fn write_peft_adapter_replacing(
    params: &ParamStore,
    adapters: &[PeftAdapter],
    config: &PeftConfig,
    out: &Path,
    inputs: &[&Path],
    replace: bool,
) -> Result<PathBuf> {
    let bad = |reason: String| BackendError::Encode { path: out.to_path_buf(), reason };
    if adapters.is_empty() {
        return Err(bad("no adapters to write".into()));
    }
    let mut store = ParamStore::new();
    for a in adapters {
        for (name, which) in [(&a.a, "lora_A"), (&a.b, "lora_B")] {
            let p = params.get(name).ok_or_else(|| bad(format!("no parameter `{name}`")))?;
            let mut p = p.clone();
            p.data = prunec_ir::ParamData::Owned(params.read_f32(name)?);
            store.insert(peft_key(&a.module, which), p);
        }
    }
    let dest = AtomicPath::folder(out, inputs, replace)?;
    let dir = dest.temp().to_path_buf();
    let io = |source| BackendError::Io { path: dir.clone(), source };
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io)?;
    }
    std::fs::create_dir_all(&dir).map_err(io)?;
    let metadata = std::collections::HashMap::from([
        ("format".to_string(), "pt".to_string()),
        (prunec_ir::output::MARKER_KEY.to_string(), prunec_ir::output::marker_value()),
    ]);
    write_safetensors(&store, &dir.join("adapter_model.safetensors"), Some(metadata), &[])?;
    // f32 written by its shortest decimal (0.05, not 0.05000000074505806)
    let short = |v: f32| v.to_string().parse::<f64>().unwrap_or(f64::from(v));
    let json = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": config.r,
        "lora_alpha": short(config.alpha),
        "lora_dropout": short(config.dropout),
        "target_modules": config.target_modules,
        "bias": "none",
        "base_model_name_or_path": config.base_model,
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": null,
    });
    let text = serde_json::to_string_pretty(&json).map_err(|e| bad(e.to_string()))? + "\n";
    std::fs::write(dir.join("adapter_config.json"), text).map_err(io)?;
    dest.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prunec_ir::Param;

    #[test]
    fn writes_peft_keys_and_config() {
        let mut params = ParamStore::new();
        params.insert("m.q_proj.lora_A.weight", Param::owned(vec![2, 3], vec![1.0; 6]).unwrap());
        params.insert("m.q_proj.lora_B.weight", Param::owned(vec![4, 2], vec![0.5; 8]).unwrap());
        let adapters = [PeftAdapter { module: "m.q_proj".into(), a: "m.q_proj.lora_A.weight".into(), b: "m.q_proj.lora_B.weight".into() }];
        let config = PeftConfig { r: 2, alpha: 4.0, dropout: 0.05, target_modules: vec!["q_proj".into()], base_model: "base".into() };
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("adapter");
        write_peft_adapter(&params, &adapters, &config, &out, &[]).unwrap();
        let bytes = std::fs::read(out.join("adapter_model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut names = st.names();
        names.sort();
        assert_eq!(names, ["base_model.model.m.q_proj.lora_A.weight", "base_model.model.m.q_proj.lora_B.weight"]);
        assert_eq!(st.tensor("base_model.model.m.q_proj.lora_B.weight").unwrap().shape(), [4, 2]);
        let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap()).unwrap();
        assert_eq!((cfg["peft_type"].as_str(), cfg["r"].as_u64(), cfg["lora_alpha"].as_f64()), (Some("LORA"), Some(2), Some(4.0)));
        assert_eq!(cfg["target_modules"][0], "q_proj");
        assert_eq!(cfg["lora_dropout"].as_f64(), Some(0.05));
        // written again: replaced
        write_peft_adapter(&params, &adapters, &config, &out, &[]).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
