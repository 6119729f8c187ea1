//! JSONL (and JSON) data files as every reader takes them: calibration and evaluation text
//! (`--calib`, `--eval-text`, with and without `--text-column`), Alpaca training rows
//! (`--train-data`), and the zero-shot tasks' rows (`--tasks TASK=FILE.jsonl`); the texts are
//! tokenized and cut into samples as calibration and evaluation do.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prunec_frontends::data;
use prunec_frontends::tasks::Task;

fuzz_target!(|data: &[u8]| {
    let path = prunec_fuzz::write("jsonl", "data.jsonl", data);
    let tok = prunec_fuzz::byte_tokenizer();
    for src in [data::read_text_source(&path), data::read_eval_source(&path, None), data::read_eval_source(&path, Some("text"))] {
        if let Ok(src) = src {
            let _ = data::token_stream(&src, tok);
            let _ = data::calibration_samples(&src, tok, 3, 8, 0);
        }
    }
    let _ = data::read_rows(&path);
    let _ = prunec_frontends::train_data::read_alpaca(&path);
    for task in Task::ALL {
        let _ = task.load(&path, Some(64));
    }
});
