"""Console text of the recommender solution's page: ``key: (English, 中文)``,
merged into :data:`tuneforge.console.i18n.MESSAGES`."""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    "nav.recommender": ("Recommender", "推荐"),
    "rec.intro": ("Recommends items from their text and each user's history, explains every recommendation, and "
                  "reaches new items nobody has rated yet through their text.",
                  "根据物品文本和用户历史推荐物品，并解释每条推荐；尚无人评分的新物品也能凭文本被推荐。"),
    "rec.yours": ("Your recommenders", "你的推荐器"),
    "rec.name": ("Name", "名称"),
    "rec.items": ("Items", "物品数"),
    "rec.users": ("Users", "用户数"),
    "rec.cold_items": ("Items without interactions", "无交互的物品"),
    "rec.blend": ("Re-ranking blend", "重排权重"),
    "rec.blend_value": ("text {text} · item-kNN {knn} · popularity {pop}", "文本 {text} · 物品近邻 {knn} · 热度 {pop}"),
    "rec.empty": ("No recommender yet. Train a bundle with `tuneforge solution recommender train`, put it in the "
                  "server's import folder and register it below.",
                  "还没有推荐器。用 `tuneforge solution recommender train` 训练一个包，"
                  "放入服务器的导入文件夹，再在下方注册。"),
    "rec.try": ("Recommend for a user", "为用户推荐"),
    "rec.recommender": ("Recommender", "推荐器"),
    "rec.user": ("User id", "用户 ID"),
    "rec.k": ("How many", "数量"),
    "rec.recommend": ("Recommend", "推荐"),
    "rec.results": ("Recommendations", "推荐结果"),
    "rec.nothing": ("Nothing left to recommend.", "没有可推荐的物品了。"),
    "rec.similar": ("Similar items", "相似物品"),
    "rec.item": ("Item id", "物品 ID"),
    "rec.find_similar": ("Find similar", "查找相似"),
    "rec.similar_results": ("Similar items", "相似物品"),
    "rec.sim_meta": ("text similarity {text} · co-interaction similarity {knn}",
                     "文本相似度 {text} · 共同交互相似度 {knn}"),
    "rec.record": ("Record an interaction", "记录一次交互"),
    "rec.record_help": ("It joins the user's history at once: the next recommendation takes it into account. "
                        "Leave the rating empty for a like.",
                        "立即加入该用户的历史，下一次推荐就会考虑它。评分留空表示喜欢。"),
    "rec.rating": ("Rating (optional)", "评分（可选）"),
    "rec.record_button": ("Record", "记录"),
    "rec.recorded": ("Recorded: user {user}, item {item}", "已记录：用户 {user}，物品 {item}"),
    "rec.register": ("Register a bundle", "注册推荐包"),
    "rec.bundle": ("Bundle folder", "推荐包文件夹"),
    "rec.bundle_help": ("The name of a folder in your import folder (<data_dir>/imports/<tenant id>), as written by "
                        "`tuneforge solution recommender train --output`.",
                        "本租户导入文件夹（<data_dir>/imports/<租户 ID>）中的文件夹名，即 "
                        "`tuneforge solution recommender train --output` 写出的文件夹。"),
    "rec.register_button": ("Register", "注册"),
    "rec.registered": ("Registered {name}", "已注册 {name}"),
    "rec.need_user": ("Enter a user id.", "请输入用户 ID。"),
    "rec.need_item": ("Enter an item id.", "请输入物品 ID。"),
    "rec.need_name": ("Enter a name.", "请输入名称。"),
    "rec.need_bundle": ("Enter the bundle folder's name.", "请输入推荐包文件夹名。"),
}
