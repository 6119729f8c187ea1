//! Parquet data files as the evaluation reads them: perplexity text (`--eval-text
//! FILE.parquet`, the `text` or `sentence` column) and the zero-shot tasks' rows in the hub's
//! schemas (`--tasks TASK=FILE.parquet`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prunec_frontends::tasks::Task;

fuzz_target!(|data: &[u8]| {
    let path = prunec_fuzz::write("parquet", "data.parquet", data);
    let _ = prunec_frontends::parquet::columns(&path);
    let _ = prunec_frontends::parquet::read_rows(&path);
    if let Ok(src) = prunec_frontends::data::read_eval_source(&path, None) {
        let _ = prunec_frontends::data::token_stream(&src, prunec_fuzz::byte_tokenizer());
    }
    for task in Task::ALL {
        let _ = task.load(&path, Some(64));
    }
});
