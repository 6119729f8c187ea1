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

/// ChatGLM-6B's conversation, as THUDM's `ChatGLMForConditionalGeneration.chat` builds it (the
/// checkpoints ship no template): a first question alone is the prompt itself; with history,
/// rounds numbered from 0, `[Round i]\n问：…\n答：…\n`. System turns are not part of it.
pub const CHATGLM6B: &str = "{%- set turns = messages | rejectattr('role', 'eq', 'system') | list -%}\
{%- if turns | length == 1 -%}{{ turns[0]['content'] }}{%- else -%}{%- for m in turns -%}\
{%- if m['role'] == 'user' -%}{{ '[Round ' ~ (loop.index0 // 2) ~ ']\\n问：' ~ m['content'] ~ '\\n答：' }}\
{%- else -%}{{ m['content'] ~ '\\n' }}{%- endif -%}{%- endfor -%}{%- endif -%}";

/// ChatGLM2-6B's conversation, as its tokenizer's `build_prompt` writes it (the checkpoints ship
/// no template): rounds numbered from 1, `[Round i]\n\n问：…\n\n答：…\n\n`. System turns are
/// not part of it.
pub const CHATGLM2: &str = "{%- set turns = messages | rejectattr('role', 'eq', 'system') | list -%}\
{%- for m in turns -%}{%- if m['role'] == 'user' -%}{{ '[Round ' ~ (loop.index0 // 2 + 1) ~ ']\\n\\n问：' ~ m['content'] ~ '\\n\\n答：' }}\
{%- else -%}{{ m['content'] ~ '\\n\\n' }}{%- endif -%}{%- endfor -%}";

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
    fn chatglm_conversations_as_thudm_builds_them() {
        let mut m = user("你好");
        assert_eq!(render(CHATGLM6B, &m, "", "", true).unwrap(), "你好");
        assert_eq!(render(CHATGLM2, &m, "", "", true).unwrap(), "[Round 1]\n\n问：你好\n\n答：");
        m.insert(0, Message { role: "system".into(), content: "ignored".into() });
        m.push(Message { role: "assistant".into(), content: "你好！".into() });
        m.push(Message { role: "user".into(), content: "1+1?".into() });
        assert_eq!(render(CHATGLM6B, &m, "", "", true).unwrap(), "[Round 0]\n问：你好\n答：你好！\n[Round 1]\n问：1+1?\n答：");
        assert_eq!(
            render(CHATGLM2, &m, "", "", true).unwrap(),
            "[Round 1]\n\n问：你好\n\n答：你好！\n\n[Round 2]\n\n问：1+1?\n\n答："
        );
    }

    #[test]
    fn python_methods_and_raised_errors() {
        assert_eq!(render("{{ messages[0]['content'].strip() }}", &user("  x "), "", "", false).unwrap(), "x");
        let e = render("{{ raise_exception('roles must alternate') }}", &user("x"), "", "", false).unwrap_err();
        assert!(e.contains("roles must alternate"), "{e}");
        assert!(render("{% if %}", &user("x"), "", "", false).unwrap_err().contains("does not parse"));
    }
}
