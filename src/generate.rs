//! `prunec generate`: text from a model, greedy or sampled, with its chat template.

use std::io::Write;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::cli::*;
use crate::device::{self};
use crate::session::*;
use crate::safety;

pub(crate) fn generate(args: &GenerateArgs) -> Result<()> {
    let model = load(&args.model)?;
    let tok = tokenizer(&args.model, args.tokenizer.as_deref())?;
    let text = if args.chat {
        let template = match args.chat_template.as_deref() {
            Some("vicuna") => prunec_frontends::chat::VICUNA.to_string(),
            Some(file) => std::fs::read_to_string(file).with_context(|| format!("--chat-template {file}"))?,
            // the tokenizer's own, else the one of the architecture's chat code (ChatGLM's)
            None => tok
                .chat_template()
                .or_else(|| prunec_frontends::arch::of(&model).and_then(|a| a.chat_template()))
                .map(str::to_string)
                .with_context(|| format!("{} has no chat template: give --chat-template vicuna or a Jinja file", args.model.display()))?,
        };
        let special = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or_default();
        let user = prunec_frontends::chat::Message { role: "user".into(), content: args.prompt.clone() };
        prunec_frontends::chat::render(&template, &[user], &special(tok.bos), &special(tok.eos), true).map_err(anyhow::Error::msg)?
    } else {
        args.prompt.clone()
    };
    let prompt = tok.encode(&text)?;
    if prompt.is_empty() {
        bail!("the prompt gives no tokens");
    }
    let origin = format!("the prompt, tokenized by {}", safety::tokenizer_origin(&args.model, args.tokenizer.as_deref()));
    safety::check_token_ids(&model, [prompt.as_slice()], &origin)?;
    let sampling = prunec_backends::runtime::Sampling {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
    };
    let start = Instant::now();
    let mut out = std::io::stdout().lock();
    write!(out, "{text}")?;
    out.flush()?;
    let mut ids: Vec<u32> = Vec::new();
    let mut shown = 0;
    let generated = device::generate(args.device, &model, &prompt, &sampling, tok.eos, |t| {
        ids.push(t);
        // print what decodes cleanly so far (a character may span tokens)
        if let Ok(text) = tok.decode(&ids) {
            if text.len() > shown && text.is_char_boundary(shown) && !text.ends_with('\u{fffd}') {
                let _ = write!(out, "{}", &text[shown..]);
                let _ = out.flush();
                shown = text.len();
            }
        }
    })?;
    writeln!(out)?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!("{} tokens in {secs:.2} s ({:.1} tokens/s, prompt {} tokens)", generated.len(), generated.len() as f64 / secs, prompt.len());
    Ok(())
}
