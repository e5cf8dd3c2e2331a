"""The fixed vocabularies of the sample data: geography, catalogue words, categories.

Reference data, not logic: regions and their countries, timezones, locales and phone
ranges; product categories with their price levels; words that titles and names are made
of. Phone prefixes are in fictional or reserved ranges (+1 555, +44 7700 900...).
"""

# fmt: off
REGIONS = ("us-east", "us-west", "eu-west", "eu-central", "apac")

# region, country, timezone, locale, phone prefix, subscriber digits, share of customers
GEO = (
    ("us-east", "US", "America/New_York", "en-US", "+1555", 7, 0.25),
    ("us-east", "CA", "America/Toronto", "en-CA", "+1555", 7, 0.04),
    ("us-west", "US", "America/Los_Angeles", "en-US", "+1555", 7, 0.17),
    ("us-west", "US", "America/Denver", "en-US", "+1555", 7, 0.03),
    ("us-west", "CA", "America/Vancouver", "en-CA", "+1555", 7, 0.02),
    ("eu-west", "GB", "Europe/London", "en-GB", "+447700", 6, 0.09),
    ("eu-west", "IE", "Europe/Dublin", "en-IE", "+35385", 7, 0.02),
    ("eu-west", "FR", "Europe/Paris", "fr-FR", "+336", 8, 0.06),
    ("eu-west", "ES", "Europe/Madrid", "es-ES", "+346", 8, 0.03),
    ("eu-central", "DE", "Europe/Berlin", "de-DE", "+49151", 8, 0.09),
    ("eu-central", "AT", "Europe/Vienna", "de-AT", "+43660", 7, 0.02),
    ("eu-central", "CH", "Europe/Zurich", "de-CH", "+4176", 7, 0.02),
    ("eu-central", "PL", "Europe/Warsaw", "pl-PL", "+4850", 7, 0.02),
    ("apac", "JP", "Asia/Tokyo", "ja-JP", "+8190", 8, 0.06),
    ("apac", "AU", "Australia/Sydney", "en-AU", "+614", 8, 0.03),
    ("apac", "SG", "Asia/Singapore", "en-SG", "+658", 7, 0.02),
    ("apac", "IN", "Asia/Kolkata", "en-IN", "+919", 9, 0.03),
)

# category, share of products, median price (USD), nouns
CATEGORIES = (
    ("electronics", 0.12, 89.0, ("Headphones", "Charger", "Speaker", "Monitor", "Keyboard")),
    ("books", 0.14, 14.0, ("Novel", "Cookbook", "Biography", "Atlas", "Guide")),
    ("home", 0.10, 35.0, ("Lamp", "Rug", "Pillow", "Shelf", "Clock")),
    ("kitchen", 0.09, 29.0, ("Blender", "Pan", "Knife Set", "Kettle", "Toaster")),
    ("toys", 0.08, 19.0, ("Puzzle", "Robot", "Doll", "Board Game", "Blocks")),
    ("beauty", 0.08, 16.0, ("Serum", "Lotion", "Shampoo", "Perfume", "Lipstick")),
    ("sports", 0.08, 39.0, ("Yoga Mat", "Dumbbells", "Ball", "Racket", "Bottle")),
    ("grocery", 0.10, 6.0, ("Coffee", "Tea", "Granola", "Olive Oil", "Chocolate")),
    ("fashion", 0.09, 45.0, ("Jacket", "Sneakers", "Scarf", "Backpack", "Jeans")),
    ("garden", 0.06, 27.0, ("Hose", "Planter", "Seeds", "Shears", "Lantern")),
    ("adult", 0.03, 25.0, ("Novelty", "Gift Box", "Kit", "Accessory", "Set")),
    ("tobacco", 0.03, 12.0, ("Cigars", "Pipe", "Rolling Papers", "Lighter", "Humidor")),
)
RESTRICTED = ("adult", "tobacco")
ADJECTIVES = (
    "Classic", "Smart", "Compact", "Deluxe", "Eco", "Premium", "Mini", "Pro", "Essential",
    "Vintage", "Ultra", "Travel", "Family", "Organic", "Wireless",
)
BRANDS = (
    "Acme", "Northwind", "Contoso", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne",
    "Tyrell", "Soylent", "Vandelay", "Oscorp", "Cyberdyne",
)

VIDEO_GENRES = (
    "drama", "comedy", "documentary", "action", "thriller", "kids", "sci-fi", "romance",
    "horror", "animation",
)
MUSIC_GENRES = (
    "pop", "rock", "hip-hop", "electronic", "jazz", "classical", "country", "r&b", "indie",
    "latin",
)
TITLE_WORDS = (
    "Midnight", "Silent", "Golden", "Broken", "Hidden", "Last", "Wild", "Electric", "Distant",
    "Crimson", "Lost", "Endless", "Paper", "Neon", "Northern", "Secret",
)
TITLE_NOUNS = (
    "River", "Garden", "Empire", "Signal", "Horizon", "Summer", "City", "Machine", "Ocean",
    "Road", "Kingdom", "Letters", "Storm", "Island", "Heart", "Mirror",
)
FIRST_NAMES = (
    "Ada", "Leo", "Mia", "Noah", "Zoe", "Kai", "Ivy", "Max", "Luna", "Eli", "Nina", "Omar",
    "Rosa", "Theo", "Yuki", "Sam",
)
LAST_NAMES = (
    "Rivers", "Stone", "Vega", "Hart", "Moreau", "Kim", "Novak", "Reyes", "Okafor", "Lind",
    "Sato", "Berg", "Costa", "Quinn", "Wolfe", "Adler", "Banks", "Frost",
)

# Event categories are also the customers' interests in event_matches.
EVENT_CATEGORIES = ("music", "sports", "theatre", "comedy", "food", "tech", "art", "family")
EVENT_KINDS = {
    "music": ("Jazz Night", "Rock Festival", "Orchestra Evening", "DJ Set"),
    "sports": ("Marathon", "Derby", "Cup Final", "Open"),
    "theatre": ("Premiere", "Musical", "Shakespeare Night", "Ballet"),
    "comedy": ("Stand-up Night", "Improv Show", "Comedy Club", "Roast"),
    "food": ("Street Food Market", "Wine Tasting", "Chef's Table", "Food Festival"),
    "tech": ("Meetup", "Conference", "Hackathon", "AI Summit"),
    "art": ("Gallery Opening", "Biennale", "Photo Fair", "Design Week"),
    "family": ("Fun Fair", "Science Day", "Puppet Show", "Zoo Night"),
}
CITIES = {
    "us-east": ("New York", "Boston", "Miami", "Toronto"),
    "us-west": ("Los Angeles", "Seattle", "San Francisco", "Denver"),
    "eu-west": ("London", "Dublin", "Paris", "Madrid"),
    "eu-central": ("Berlin", "Munich", "Vienna", "Zurich"),
    "apac": ("Tokyo", "Sydney", "Singapore", "Mumbai"),
}
REGION_WEIGHTS = (0.29, 0.22, 0.2, 0.15, 0.14)
# fmt: on
