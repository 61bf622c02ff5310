"""First names the name service picks from."""

NAMES: tuple[str, ...] = (
    "Aaliyah", "Aarav", "Abigail", "Ada", "Adrian", "Ahmed", "Aiko", "Alejandro",
    "Amara", "Amelia", "Ana", "Aria", "Arjun", "Ava", "Benjamin", "Camila",
    "Carlos", "Charlotte", "Chen", "Chloe", "Daniel", "Diego", "Elena", "Eli",
    "Emma", "Ethan", "Fatima", "Freya", "Gabriel", "Grace", "Hana", "Hugo",
    "Ines", "Isabella", "Ivan", "Jack", "James", "Kai", "Kenji", "Layla",
    "Leo", "Liam", "Lucas", "Luna", "Maya", "Mateo", "Mia", "Mohammed",
    "Nia", "Noah", "Nora", "Olivia", "Omar", "Priya", "Rafael", "Rosa",
    "Sakura", "Samuel", "Sofia", "Sophia", "Theo", "Valentina", "Wei", "Yusuf",
    "Zara", "Zoe",
)  # fmt: skip
