"""The TRL baseline of bench/generation.py (speed part): LoRA SFT with TRL's ``SFTTrainer`` on a chat JSONL, with
the settings tuneforge's run uses (batch 8, max length 512, lr 2e-4, rank 16 / alpha 32 / dropout 0.05 on every
linear layer, one epoch, bf16 where the CPU has it), then its eval loss on the dev file (TRL's completion mask:
the same tokens tuneforge learns). Prints one JSON line.

    python bench/trl_sft_baseline.py MODEL_DIR TRAIN_JSONL DEV_JSONL OUT_DIR   # env BF16=1 for bf16 autocast
"""

import json
import os
import sys
import time

os.environ["HF_HUB_OFFLINE"] = "1"
from datasets import Dataset  # noqa: E402
from peft import LoraConfig  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402


def load(path: str) -> Dataset:
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return Dataset.from_list([{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows])


def main() -> None:
    model, train, dev, out = sys.argv[1:5]
    cfg = SFTConfig(output_dir=out, per_device_train_batch_size=8, per_device_eval_batch_size=8, num_train_epochs=1,
                    learning_rate=2e-4, max_length=512, logging_steps=5, save_strategy="no", report_to=[], seed=0,
                    bf16=os.environ.get("BF16") == "1", use_cpu=True, dataloader_num_workers=0)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=load(train), eval_dataset=load(dev), peft_config=lora)
    tokens = sum(len(x["input_ids"]) for x in trainer.train_dataset)  # non-padding tokens of the data
    t0 = time.time()
    result = trainer.train()
    seconds = time.time() - t0
    ev = trainer.evaluate()
    print(json.dumps({"train_s": round(seconds, 1), "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1),
                      "train_loss": round(result.training_loss, 4), "eval_loss": round(ev["eval_loss"], 4)}))


if __name__ == "__main__":
    main()
