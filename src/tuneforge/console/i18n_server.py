"""Console text for what the server says: ``key: (English, 中文)``, merged into
:data:`tuneforge.console.i18n.MESSAGES`.

The API's messages stay English (they are the OpenAI-compatible ``message`` fields); the Chinese console shows
them in Chinese through these keys:

* ``error.<code>``: what an error code means, shown before the server's own message, which keeps the details
  (the field, the limit, the line) — app.js ``errorText``;
* ``event.*``: the job events the server writes, matched by the patterns in app.js ``serverText`` (``{name}``
  marks a value taken from the English message);
* ``metric.<name>``: metric names (``eval_`` prefix dropped), for charts, tables and event lines.

tests/console/test_console_text.py checks that every error code the server sends has an ``error.`` key and that
every event the jobs package writes is matched.
"""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    "error.detail": ("Details: {message}", "详情：{message}"),
    # authentication and permissions
    "error.invalid_api_key": ("The API key is not valid.", "API 密钥无效。"),
    "error.missing_api_key": ("No API key was sent.", "请求没有携带 API 密钥。"),
    "error.revoked_api_key": ("This API key was revoked.", "此 API 密钥已被吊销。"),
    "error.permission_denied": ("This key may not do that.", "此密钥无权执行该操作。"),
    "error.missing_scope": ("This key lacks the scope this needs.", "此密钥缺少所需的权限范围。"),
    "error.trial_expired": ("The free trial has ended: data can still be read; a paid plan trains and predicts "
                            "again.", "免费试用已结束：数据仍可查看，升级到付费套餐后可继续训练和推理。"),
    "error.tenant_disabled": ("This organisation is disabled.", "该组织已被停用。"),
    "error.session_handed_over": ("The session was handed over to another request.", "会话已交给另一个请求。"),
    # not found, conflicts
    "error.not_found": ("Not found (or not yours).", "找不到该对象（或它不属于你的组织）。"),
    "error.model_not_found": ("No such model.", "找不到该模型。"),
    "error.file_not_found": ("No such file.", "找不到该文件。"),
    "error.unknown_item": ("No such item.", "找不到该条目。"),
    "error.conflict": ("The object is in use or changed meanwhile.", "该对象正在使用中，或已被修改。"),
    "error.file_in_use": ("The file is used by a job that has not finished.", "该文件正被未结束的任务使用。"),
    "error.key_in_use": ("This key is the one signed in; use another key to revoke it.",
                         "这是当前登录使用的密钥；请用另一个密钥来吊销它。"),
    "error.tenant_exists": ("An organisation of that name exists.", "同名组织已存在。"),
    "error.idempotency_key_in_use": ("A request with the same Idempotency-Key is still running.",
                                     "具有相同 Idempotency-Key 的请求仍在处理中。"),
    "error.idempotency_key_reused": ("The Idempotency-Key was used before with a different request.",
                                     "该 Idempotency-Key 之前已用于另一个不同的请求。"),
    "error.cannot_delete_base_model": ("Base models cannot be deleted.", "基础模型不能删除。"),
    "error.invalid_job_state": ("The job's status does not allow this now.", "任务当前的状态不允许此操作。"),
    # chat and completions
    "error.context_length_exceeded": ("The prompt is longer than the model's context: shorten it or ask for fewer "
                                      "tokens.", "提示超出了模型的上下文长度：请缩短提示或减少生成的 token 数。"),
    "error.model_not_supported": ("This model does not generate text: use a chat model.",
                                  "该模型不能生成文本：请使用对话模型。"),
    "error.model_unloaded": ("The model was unloaded while answering: send the request again.",
                             "模型在回答时被卸载：请重新发送请求。"),
    "error.server_overloaded": ("The server is busy: wait a moment and retry.", "服务器繁忙，请稍后重试。"),
    "error.timeout": ("The request took too long and was stopped.", "请求耗时过长，已被停止。"),
    "error.tokens_limit_exceeded": ("Too many tokens this minute: wait a moment and retry.",
                                    "本分钟的 token 用量已达上限，请稍后重试。"),
    "error.unknown_parameter": ("The request has a field the API does not know.", "请求中包含 API 不认识的字段。"),
    "error.unsupported_content": ("The message content is not supported (text only).",
                                  "不支持该消息内容（仅支持文本）。"),
    "error.unsupported_parameter": ("A field of the request is not supported yet.", "请求中的某个字段暂不支持。"),
    "error.unsupported_value": ("A field of the request has a value that is not supported.",
                                "请求中某个字段的取值不受支持。"),
    # limits
    "error.rate_limit_exceeded": ("Too many requests: wait a moment and retry.", "请求过于频繁，请稍后重试。"),
    "error.quota_exceeded": ("A quota is used up.", "额度已用完。"),
    "error.trained_tokens_limit": ("This month's trained-token quota would be exceeded.",
                                   "将超出本月的训练 token 额度。"),
    "error.storage_limit": ("The storage quota is used up: delete files or models.",
                            "存储额度已用完：请删除一些文件或模型。"),
    "error.concurrent_jobs_limit": ("Too many jobs are running at once.", "同时运行的任务过多。"),
    "error.file_too_large": ("The file is larger than the limit.", "文件超过大小上限。"),
    "error.request_too_large": ("The request is larger than the limit.", "请求超过大小上限。"),
    "error.too_many_inputs": ("Too many inputs in one request: split them.", "单次请求的输入过多，请分批发送。"),
    "error.input_too_long": ("An input is longer than the limit: shorten or split it.",
                             "有输入超过长度上限，请缩短或拆分。"),
    # bad values and files
    "error.invalid_request": ("The request is not valid.", "请求无效。"),
    "error.invalid_value": ("A value is not valid.", "有取值无效。"),
    "error.invalid_input": ("An input is not valid.", "有输入无效。"),
    "error.invalid_option": ("An option is not valid.", "有选项无效。"),
    "error.invalid_hyperparameters": ("A hyperparameter is not valid.", "有超参数无效。"),
    "error.invalid_suffix": ("The model name suffix is not valid.", "模型名后缀无效。"),
    "error.invalid_purpose": ("The file's purpose is not valid.", "文件用途无效。"),
    "error.invalid_file_purpose": ("This file's purpose does not allow that.", "该文件的用途不允许此操作。"),
    "error.unsupported_file_type": ("This kind of file is not supported.", "不支持这种文件。"),
    "error.invalid_training_file": ("The training file has problems to fix.", "训练文件有需要修正的问题。"),
    "error.validation_error": ("The files could not be validated.", "文件校验失败。"),
    "error.no_data": ("There is no data for this.", "没有可用的数据。"),
    "error.wrong_task": ("The model or data is of another task.", "模型或数据属于另一种任务。"),
    "error.unsupported_method": ("This method does not support that.", "该方法不支持此操作。"),
    "error.model_required": ("Choose a model.", "请选择模型。"),
    "error.model_not_available": ("The model is not available here.", "该模型在此服务器上不可用。"),
    "error.base_model": ("The base model cannot be used.", "无法使用该基础模型。"),
    "error.invalid_model": ("The model cannot be used for this job.", "该模型不能用于此任务。"),
    # training and the server
    "error.training_error": ("The training failed.", "训练失败。"),
    "error.training_crashed": ("The training process crashed.", "训练进程崩溃。"),
    "error.worker_error": ("The worker running the job failed.", "运行任务的工作节点出错。"),
    "error.max_attempts_exceeded": ("The job failed after too many attempts.", "任务重试次数过多，已失败。"),
    "error.storage_error": ("Storage failed or is full.", "存储出错或已满。"),
    "error.internal_error": ("Something went wrong on the server.", "服务器内部出错。"),
    # job events (the English is the pattern's meaning; the patterns are in app.js)
    "event.created": ("Created fine-tuning job: {id}", "已创建微调任务：{id}"),
    "event.validating": ("Validating files on worker {worker}.", "正在工作节点 {worker} 上校验文件。"),
    "event.validated": ("Validated {train} training examples.", "已校验 {train} 个训练样本。"),
    "event.validated_dev": ("Validated {train} training examples, {dev} validation examples.",
                            "已校验 {train} 个训练样本、{dev} 个验证样本。"),
    "event.queued": ("Files validated; the job is queued for training.", "文件校验通过，任务已排队等待训练。"),
    "event.attempt": ("Attempt {n}: training on worker {worker}.", "第 {n} 次训练：在工作节点 {worker} 上训练。"),
    "event.started": ("Training started (attempt {n}).", "训练已开始（第 {n} 次）。"),
    "event.step": ("Step {step}: {metrics}", "第 {step} 步：{metrics}"),
    "event.logged": ("logged", "已记录"),
    "event.checkpoint": ("Checkpoint saved at step {step}.", "已在第 {step} 步保存检查点。"),
    "event.resuming": ("Resuming from the checkpoint at step {step} (saved by {name}).",
                       "从第 {step} 步的检查点继续训练（由 {name} 保存）。"),
    "event.earlier_finished": ("An earlier attempt ({name}) had finished training; using its model.",
                               "之前的一次训练（{name}）已完成，直接使用它的模型。"),
    "event.succeeded": ("The job has successfully completed: new model {model}.", "任务已成功完成：新模型 {model}。"),
    "event.failed": ("Fine-tuning job failed: {message}", "微调任务失败：{message}"),
    "event.cancel_requested": ("Cancellation requested.", "已请求取消。"),
    "event.control_requested": ("{what} requested; stopping at the next step.", "已请求{what}，将在下一步停止。"),
    "event.cancelled": ("Fine-tuning job cancelled.", "微调任务已取消。"),
    "event.pause_requested": ("Pause requested.", "已请求暂停。"),
    "event.paused": ("Fine-tuning job paused.", "微调任务已暂停。"),
    "event.paused_resumable": ("Fine-tuning job paused; resume it to continue from its last checkpoint.",
                               "微调任务已暂停；继续后将从最近的检查点接着训练。"),
    "event.pause_withdrawn": ("Pause request withdrawn.", "已撤回暂停请求。"),
    "event.resumed": ("Fine-tuning job resumed; it continues from its last checkpoint.",
                      "微调任务已继续，将从最近的检查点接着训练。"),
    "event.retry": ("{what} failed ({why}); the job is queued again and will resume from its last checkpoint "
                    "(failed attempts: {n} of {limit}).",
                    "{what}失败（{why}）；任务已重新排队，将从最近的检查点继续（失败次数：{n} / {limit}）。"),
    "event.requeued": ("{reason}; the job is queued again and will resume from its last checkpoint.",
                       "{reason}；任务已重新排队，将从最近的检查点继续。"),
    "event.what_attempt": ("Attempt {n}", "第 {n} 次训练"),
    "event.what_validation": ("File validation", "文件校验"),
    "event.what_cancel": ("Cancel", "取消"),
    "event.what_pause": ("Pause", "暂停"),
    # metrics (the eval_ prefix is dropped; dev metrics are named by the chart or table they are in)
    "metric.loss": ("loss", "损失"),
    "metric.train_loss": ("training loss", "训练损失"),
    "metric.accuracy": ("Accuracy", "准确率"),
    "metric.macro_f1": ("Macro F1", "宏平均 F1"),
    "metric.micro_f1": ("Micro F1", "微平均 F1"),
    "metric.weighted_f1": ("Weighted F1", "加权 F1"),
    "metric.f1": ("F1", "F1"),
    "metric.precision": ("Precision", "精确率"),
    "metric.recall": ("Recall", "召回率"),
    "metric.exact_match": ("Exact match (EM)", "完全匹配（EM）"),
    "metric.hamming_accuracy": ("Hamming accuracy", "汉明准确率"),
    "metric.token_accuracy": ("Token accuracy", "词元准确率"),
    "metric.learning_rate": ("learning rate", "学习率"),
    "metric.grad_norm": ("gradient norm", "梯度范数"),
    "metric.epoch": ("epoch", "轮次"),
    "metric.dev": ("dev {name}", "验证集{name}"),
}
