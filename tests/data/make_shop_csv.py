"""Writes shop.csv, the small "bring your own data" example of docs/your_data.md: 600 rows of
a shop's impressions with a click (learnable from device, price and page), a purchase given a
click, a dwell time, the user's recent items with behaviors, and the item title as free text.
Deterministic (seed 7); rerun with ``python tests/data/make_shop_csv.py``."""

import csv
import math
import pathlib
import random

ROWS = 600
PAGES = ("home", "search", "detail")
DEVICES = ("ios", "android", "web")
BEHAVIORS = ("view", "cart", "buy")
WORDS = ("red", "blue", "cotton", "wool", "shirt", "scarf", "boots", "lamp", "mug", "desk")


def main(path: pathlib.Path = pathlib.Path(__file__).with_name("shop.csv")) -> None:
    rng = random.Random(7)
    items = [f"i{k}" for k in range(40)]
    titles = {i: " ".join(rng.sample(WORDS, 3)).title() for i in items}
    prices = {i: round(rng.uniform(5, 120), 2) for i in items}
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["user_id", "item_id", "device", "price", "page", "history_items", "history_behaviors",
                      "title", "click", "purchase", "dwell"])
        for _ in range(ROWS):
            item, device, page = rng.choice(items), rng.choice(DEVICES), rng.choice(PAGES)
            history = rng.sample(items, rng.randint(0, 5))
            logit = 1.2 * (device == "ios") - 0.02 * prices[item] + 0.8 * (page == "search") + 0.3
            click = int(rng.random() < 1 / (1 + math.exp(-logit)))
            purchase = int(rng.random() < 0.4) if click else ""  # undefined without a click: left empty
            dwell = round(rng.uniform(1, 5) + 10 * click, 1)
            out.writerow([f"u{rng.randint(0, 59)}", item, device, prices[item], page, "|".join(history),
                          "|".join(rng.choice(BEHAVIORS) for _ in history), titles[item], click, purchase, dwell])


if __name__ == "__main__":
    main()
