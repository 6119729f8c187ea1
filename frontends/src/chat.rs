//! Chat templates: a conversation rendered as text the way the model's own template (Jinja,
//! from `tokenizer_config.json`, `chat_template.jinja` or GGUF `tokenizer.chat_template`)
//! renders it, with Python's string methods as transformers offers them to templates.

use minijinja::{context, Environment, Error, ErrorKind};
use serde::Serialize;

/// Vicuna's conversation (FastChat's `vicuna_v1.1`): a system line, then ` USER: … ASSISTANT: …`.
/// Vicuna checkpoints ship no template of their own.
pub const VICUNA: &str = "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}{% set messages = messages[1:] %}\
{% else %}{% set system = \"A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions.\" %}{% endif %}\
{{ system }}{% for m in messages %}{% if m['role'] == 'user' %}{{ ' USER: ' + m['content'] }}{% else %}{{ ' ASSISTANT: ' + m['content'] + eos_token }}{% endif %}{% endfor %}\
{% if add_generation_prompt %}{{ ' ASSISTANT:' }}{% endif %}";

/// One turn of a conversation.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// `messages` rendered by `template`, ending with the assistant's turn opened when
/// `add_generation_prompt`. Errors say what in the template failed.
pub fn render(template: &str, messages: &[Message], bos: &str, eos: &str, add_generation_prompt: bool) -> Result<String, String> {
    let mut env = Environment::new();
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", |msg: String| -> Result<String, Error> { Err(Error::new(ErrorKind::InvalidOperation, msg)) });
    env.add_template("chat", template).map_err(|e| format!("the chat template does not parse: {e}"))?;
    let t = env.get_template("chat").map_err(|e| e.to_string())?;
    t.render(context! { messages => messages, bos_token => bos, eos_token => eos, add_generation_prompt => add_generation_prompt })
        .map_err(|e| format!("rendering the chat template failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> Vec<Message> {
        vec![Message { role: "user".into(), content: text.into() }]
    }

    #[test]
    fn chatml_as_smollm2_writes_it() {
        let t = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
        let s = render(t, &user("Hi"), "", "<|im_end|>", true).unwrap();
        assert_eq!(
            s,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn vicuna_conversation() {
        let mut m = user("Hello");
        assert_eq!(
            render(VICUNA, &m, "<s>", "</s>", true).unwrap(),
            "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions. USER: Hello ASSISTANT:"
        );
        m.insert(0, Message { role: "system".into(), content: "Be brief.".into() });
        m.push(Message { role: "assistant".into(), content: "Hi.".into() });
        assert_eq!(render(VICUNA, &m, "<s>", "</s>", false).unwrap(), "Be brief. USER: Hello ASSISTANT: Hi.</s>");
    }

    #[test]
    fn python_methods_and_raised_errors() {
        assert_eq!(render("{{ messages[0]['content'].strip() }}", &user("  x "), "", "", false).unwrap(), "x");
        let e = render("{{ raise_exception('roles must alternate') }}", &user("x"), "", "", false).unwrap_err();
        assert!(e.contains("roles must alternate"), "{e}");
        assert!(render("{% if %}", &user("x"), "", "", false).unwrap_err().contains("does not parse"));
    }
}
