/* corpus.c: the built-in multi-domain corpus generator (see corpus.h for the
 * domains and how each is built).
 * Not for: reading the user's text (data.c). Everything here is a pure
 * function of (domain, target size, seed); the word lists are constant. */
#include "train/corpus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------ text builder */

typedef struct gen {
    uint8_t *p;    /* [cap] the text so far */
    size_t n, cap; /* bytes used, allocated */
    int oom;       /* an allocation failed: further writes are dropped */
    int space;     /* word() writes a space first */
    int cap_next;  /* capitalise the next put() if it starts with a-z */
    moe_rng r;     /* the only source of randomness */
} gen;

static void raw(gen *g, const char *s, size_t n) {
    if (g->oom || n == 0) return;
    if (g->n + n + 1 > g->cap) {
        size_t nc = g->cap ? g->cap : 4096;
        while (nc < g->n + n + 1) nc *= 2;
        uint8_t *q = realloc(g->p, nc);
        if (!q) { g->oom = 1; return; }
        g->p = q;
        g->cap = nc;
    }
    memcpy(g->p + g->n, s, n);
    g->n += n;
}
static void put(gen *g, const char *s) {
    size_t at = g->n, n = strlen(s);
    raw(g, s, n);
    if (g->cap_next && n && !g->oom) {
        if (g->p[at] >= 'a' && g->p[at] <= 'z') g->p[at] = (uint8_t)(g->p[at] - 32);
        g->cap_next = 0;
    }
}
static void word(gen *g, const char *s) { if (g->space) raw(g, " ", 1); put(g, s); g->space = 1; }
static void punct(gen *g, const char *s) { put(g, s); g->space = 1; }
static void endline(gen *g) { raw(g, "\n", 1); g->space = 0; }
static void start(gen *g) { g->cap_next = 1; }
static void put_uint(gen *g, uint64_t v) {
    char b[24];
    int i = 23;
    b[i] = 0;
    do { b[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    put(g, b + i);
}
static void num(gen *g, uint64_t v) { if (g->space) raw(g, " ", 1); put_uint(g, v); g->space = 1; }

static uint32_t below(gen *g, uint32_t n) {
    return (uint32_t)(((moe_rng_u64(&g->r) >> 32) * n) >> 32);
}
static int pct(gen *g, int p) { return (int)below(g, 100) < p; }
static int between(gen *g, int lo, int hi) { return lo + (int)below(g, (uint32_t)(hi - lo + 1)); }
#define PICK(g, a) ((a)[below((g), (uint32_t)NELEM(a))])

/* ------------------------------------------------------------ shared lists */

static const char *const MALE[] = {
    "Tom", "Jack", "Peter", "Sam", "Henry", "Oliver", "Leo", "Max", "Daniel", "Arthur",
    "Hugo", "Felix", "Oscar", "Simon", "Martin", "Victor", "George", "Edward", "Lucas",
    "Adam", "Noah", "Ben", "Carl", "Frank", "Paul", "Ralph", "Walter", "Owen", "Isaac", "Theo"};
static const char *const FEMALE[] = {
    "Anna", "Mary", "Lucy", "Emma", "Rose", "Alice", "Clara", "Grace", "Julia", "Nora",
    "Ella", "Sophie", "Lily", "Hannah", "Ruth", "Martha", "Ivy", "Olivia", "Maya", "Helen",
    "Laura", "Sarah", "Eva", "Iris", "Judith", "Vera", "Agnes", "Mia", "Chloe", "Beth"};
static const char *const SURNAME[] = {
    "Smith", "Miller", "Brown", "Taylor", "Clark", "Walker", "Wright", "Green", "Hall",
    "Wood", "Turner", "Baker", "Hill", "Moore", "Cooper", "Ward", "King", "Fischer", "Weber",
    "Becker", "Wagner", "Hoffmann", "Schulz", "Koch", "Richter", "Klein", "Wolf", "Neumann",
    "Martin", "Bernard", "Dubois", "Moreau", "Laurent", "Rossi", "Russo", "Costa", "Silva",
    "Santos", "Novak", "Horvat", "Kowalski", "Nowak", "Jensen", "Hansen", "Larsen", "Berg",
    "Lind", "Olsen", "Murphy", "Kelly"};
static const char *const CITY[] = {
    "London", "Paris", "Berlin", "Madrid", "Rome", "Lisbon", "Dublin", "Vienna", "Prague",
    "Oslo", "Boston", "Chicago", "Denver", "Seattle", "Toronto", "Sydney", "Melbourne",
    "Auckland", "Cairo", "Nairobi", "Lagos", "Mumbai", "Tokyo", "Osaka", "Seoul", "Manila",
    "Lima", "Bogota", "Santiago", "Quito", "Havana", "Austin", "Dallas", "Phoenix",
    "Atlanta", "Leeds", "Bristol", "York", "Glasgow", "Cardiff", "Brighton", "Oxford",
    "Porto", "Seville", "Naples", "Milan", "Athens", "Warsaw", "Helsinki", "Bergen"};
static const char *const JOB[] = {
    "baker", "farmer", "teacher", "doctor", "fisherman", "sailor", "painter", "carpenter",
    "merchant", "nurse", "soldier", "writer", "singer", "tailor", "miller", "hunter",
    "driver", "engineer", "lawyer", "gardener", "cook", "shepherd", "potter", "blacksmith",
    "musician", "student", "pilot", "mechanic", "librarian", "shopkeeper", "clerk", "judge",
    "weaver", "builder", "poet", "dancer", "scientist", "banker", "postman", "guard",
    "inventor", "artist", "plumber", "architect", "pharmacist", "journalist", "chemist",
    "electrician", "accountant", "waiter"};
static const char *const DAY[] = {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
                                  "Saturday", "Sunday"};
static const char *const MONTH[] = {"January", "February", "March", "April", "May", "June",
                                    "July", "August", "September", "October", "November",
                                    "December"};

/* ------------------------------------------------------------ english */

static const char *const EN_ADJ_P[] = {
    "old", "young", "kind", "tired", "happy", "sad", "clever", "brave", "curious", "strange",
    "lonely", "famous", "poor", "rich", "gentle", "angry", "careful", "proud", "honest",
    "friendly", "shy", "patient", "quiet", "busy", "tall", "hungry", "sleepy", "cheerful",
    "grumpy", "wise", "foolish", "nervous", "calm", "polite", "stubborn", "generous", "clumsy",
    "skilled", "cautious", "restless"};
static const char *const EN_ADJ_T[] = {
    "small", "large", "old", "new", "heavy", "light", "red", "blue", "green", "white",
    "black", "golden", "silver", "wooden", "broken", "empty", "full", "dusty", "clean",
    "strange", "beautiful", "ancient", "tiny", "shiny", "cheap", "expensive", "round",
    "square", "rusty", "fragile", "colorful", "plain", "warm", "wet", "hidden", "lost",
    "yellow", "brown", "useful", "precious"};
static const char *const EN_ADJ_L[] = {
    "quiet", "busy", "small", "large", "old", "dark", "bright", "narrow", "wide", "empty",
    "crowded", "distant", "northern", "southern", "peaceful", "noisy", "ancient", "green",
    "cold", "sunny", "foggy", "muddy", "lonely", "hidden", "famous", "beautiful", "little",
    "windy", "sleepy", "forgotten"};
static const char *const EN_THING[] = {
    "lamp", "letter", "book", "basket", "key", "box", "coat", "hat", "ring", "map", "bottle",
    "cup", "knife", "rope", "picture", "mirror", "chair", "table", "bell", "clock", "candle",
    "blanket", "bag", "shoe", "apple", "loaf of bread", "cake", "coin", "ladder", "bicycle",
    "boat", "kite", "drum", "violin", "umbrella", "newspaper", "ticket", "jar", "feather",
    "stone", "shell", "flower", "notebook", "pencil", "teapot", "bucket", "lantern", "wheel",
    "hammer", "scarf", "glove", "necklace", "watch", "radio", "camera", "suitcase",
    "envelope", "photograph", "spoon", "plate"};
static const char *const EN_ANIMAL[] = {
    "dog", "cat", "horse", "bird", "fox", "wolf", "goat", "cow", "sheep", "rabbit", "mouse",
    "owl", "duck", "donkey", "pig", "crow", "bear", "deer", "squirrel", "frog"};
static const char *const EN_PLACE[] = {
    "river", "market", "station", "library", "forest", "garden", "bridge", "harbor",
    "village", "church", "school", "bakery", "mountain", "lake", "field", "castle", "farm",
    "hill", "beach", "square", "museum", "hospital", "park", "street", "cottage", "mill",
    "tower", "island", "valley", "inn", "kitchen", "shop", "cafe", "road", "meadow", "port",
    "palace", "cave", "orchard", "barn"};
static const char *const EN_HOME[] = {"village", "town", "city", "valley", "cottage",
                                      "house", "farm", "mill", "tower", "castle"};
static const char *const EN_VT[] = {
    "found", "bought", "carried", "opened", "painted", "repaired", "lost", "watched", "sold",
    "cleaned", "built", "hid", "dropped", "picked up", "borrowed", "wrapped", "stole",
    "noticed", "held", "showed", "remembered", "forgot", "filled", "mended", "polished",
    "examined", "brought", "took", "kept", "shared"};
static const char *const EN_VM[] = {"walked", "ran", "hurried", "drove", "rode", "wandered",
                                    "returned", "went", "travelled", "sailed", "cycled",
                                    "marched", "strolled", "rushed"};
static const char *const EN_VI[] = {"slept", "waited", "laughed", "worked", "sang", "cried",
                                    "danced", "rested", "read", "played", "listened",
                                    "smiled", "stayed", "sat", "prayed", "wrote"};
static const char *const EN_TIME[] = {
    "In the morning", "In the evening", "At dawn", "At noon", "Later that day",
    "The next day", "After dinner", "On Sunday", "One winter", "Suddenly", "Soon",
    "Before sunset", "That night", "Every morning", "A week later", "After a while",
    "In the spring", "On the way home", "At midnight", "Early on Monday"};
static const char *const EN_BECAUSE[] = {
    "it was late", "it was raining", "the road was long", "the shop was closed",
    "it was very cold", "nobody was at home", "the sun was shining", "the wind was strong",
    "the river was high", "the bell had rung", "the bread was gone", "the door was locked",
    "winter was coming", "the lamp had gone out"};
static const char *const EN_WHEN[] = {
    "the sun went down", "the bell rang", "it grew dark", "the train arrived",
    "the snow began to fall", "the market opened", "the clock struck nine",
    "the rain stopped", "the ship came in", "the guests left"};
static const char *const EN_UTTER[] = {
    "We must leave now", "That is very strange", "Where is my hat?", "Come quickly!",
    "I am hungry", "Did you see that?", "It will rain soon", "What a beautiful day!",
    "I do not know", "Wait for me!", "This belongs to me", "What time is it?",
    "Be careful!", "Thank you", "Nobody must know", "Tomorrow we go to the city",
    "Who did this?", "That is a good idea", "Help!", "I will be back soon",
    "Look at the sky", "Is anyone there?", "We are almost home", "Let me try"};
static const char *const EN_ANIMAL_DO[] = {
    "was sleeping in the sun", "ran across the road", "waited by the door",
    "jumped over the fence", "sat on the roof", "hid under the bridge",
    "watched from the hill", "drank from the river", "followed the cart",
    "barked at the moon", "ate an apple", "looked at the stranger"};
static const char *const EN_REACT[] = {"smiled", "laughed", "sighed", "nodded", "frowned",
                                       "shook the dust off", "said nothing"};
static const char *const EN_WEATHER[] = {"cold", "warm", "grey", "bright", "windy", "rainy",
                                         "quiet", "foggy", "stormy", "clear"};
static const char *const EN_PART[] = {"morning", "day", "evening", "night", "afternoon"};
static const char *const EN_PUB[] = {
    "library", "bridge", "station", "hospital", "park", "school", "museum", "market hall",
    "stadium", "harbor", "swimming pool", "town hall", "theatre"};
static const char *const EN_GOODS[] = {"bread", "coffee", "fuel", "milk", "electricity",
                                       "fruit", "rice", "steel", "timber", "wool"};

static int en_vowel(const char *s) {
    if (strncmp(s, "hon", 3) == 0) return 1;
    if (strncmp(s, "uni", 3) == 0 || strncmp(s, "use", 3) == 0) return 0;
    return strchr("aeiou", s[0]) != NULL;
}
/* "the|a|an [adj] noun" */
static void en_np(gen *g, int def, const char *adj, const char *noun) {
    const char *first = adj ? adj : noun;
    word(g, def ? "the" : en_vowel(first) ? "an" : "a");
    if (adj) word(g, adj);
    word(g, noun);
}
static const char *maybe(gen *g, int p, const char *const *list, size_t n) {
    return pct(g, p) ? list[below(g, (uint32_t)n)] : NULL;
}
#define MAYBE(g, p, a) maybe((g), (p), (a), NELEM(a))

typedef struct person { const char *name; int female; const char *job; } person;

static void en_ref(gen *g, const person *c) {
    int k = (int)below(g, 100);
    if (k < 45) word(g, c->name);
    else if (k < 80) word(g, c->female ? "she" : "he");
    else { word(g, "the"); word(g, c->job); }
}
static void en_clause(gen *g) {
    int k = (int)below(g, 100);
    if (k < 15) { word(g, "because"); word(g, PICK(g, EN_BECAUSE)); }
    else if (k < 25) { word(g, "when"); word(g, PICK(g, EN_WHEN)); }
}
static void en_sentence(gen *g, const person *c, const person *c2) {
    start(g);
    int k = (int)below(g, 11);
    if (k <= 1 && pct(g, 40)) { word(g, PICK(g, EN_TIME)); punct(g, ","); }
    switch (k) {
    case 0:
        en_ref(g, c); word(g, PICK(g, EN_VM)); word(g, "to");
        en_np(g, 1, MAYBE(g, 40, EN_ADJ_L), PICK(g, EN_PLACE)); en_clause(g); break;
    case 1:
        en_ref(g, c); word(g, PICK(g, EN_VT));
        en_np(g, pct(g, 30), MAYBE(g, 60, EN_ADJ_T), PICK(g, EN_THING));
        if (pct(g, 50)) { word(g, pct(g, 50) ? "in" : "near"); en_np(g, 1, NULL, PICK(g, EN_PLACE)); }
        en_clause(g); break;
    case 2:
        en_ref(g, c); word(g, PICK(g, EN_VI));
        if (pct(g, 60)) { word(g, pct(g, 50) ? "in" : "by"); en_np(g, 1, MAYBE(g, 30, EN_ADJ_L), PICK(g, EN_PLACE)); }
        else word(g, pct(g, 50) ? "for a while" : "until the evening");
        break;
    case 3:
        en_ref(g, c); word(g, "saw"); en_np(g, 0, MAYBE(g, 60, EN_ADJ_P), PICK(g, EN_ANIMAL));
        word(g, "near the"); word(g, PICK(g, EN_PLACE)); break;
    case 4:
        en_np(g, pct(g, 50), MAYBE(g, 50, EN_ADJ_P), PICK(g, EN_ANIMAL)); word(g, PICK(g, EN_ANIMAL_DO)); break;
    case 5: {
        const char *u = PICK(g, EN_UTTER);
        char last = u[strlen(u) - 1];
        word(g, "\""); g->space = 0; start(g); put(g, u);
        punct(g, last == '?' || last == '!' ? "\"" : ",\"");
        const char *verb = last == '?' ? "asked" : last == '!' ? "shouted" : "said";
        if (pct(g, 50)) { word(g, c->female ? "she" : "he"); word(g, verb); }
        else { word(g, verb); if (pct(g, 70)) word(g, c->name); else { word(g, "the"); word(g, c->job); } }
        break;
    }
    case 6:
        en_ref(g, c); word(g, pct(g, 50) ? "thought" : "said"); word(g, "that the");
        if (pct(g, 50)) { word(g, PICK(g, EN_THING)); word(g, "was"); word(g, PICK(g, EN_ADJ_T)); }
        else { word(g, PICK(g, EN_PLACE)); word(g, "was"); word(g, PICK(g, EN_ADJ_L)); }
        break;
    case 7:
        word(g, "It was"); en_np(g, 0, PICK(g, EN_WEATHER), pct(g, 30) ? PICK(g, DAY) : PICK(g, EN_PART));
        break;
    case 8:
        if (!c2) { en_ref(g, c); word(g, "looked at the"); word(g, PICK(g, EN_THING)); break; }
        if (pct(g, 50)) {
            word(g, c2->name); word(g, "gave"); word(g, pct(g, 50) ? c->name : c->female ? "her" : "him");
            en_np(g, 0, MAYBE(g, 60, EN_ADJ_T), PICK(g, EN_THING));
        } else {
            en_ref(g, c); word(g, "and"); word(g, c2->name); word(g, PICK(g, EN_VM)); word(g, "to the");
            word(g, PICK(g, EN_PLACE)); word(g, "together");
        }
        break;
    default:
        en_ref(g, c); word(g, "picked up the"); word(g, PICK(g, EN_THING)); word(g, "and");
        word(g, PICK(g, EN_REACT)); break;
    }
    punct(g, ".");
}
static void en_story(gen *g) {
    person c = {NULL, (int)below(g, 2), PICK(g, JOB)}, c2 = {NULL, (int)below(g, 2), PICK(g, JOB)};
    c.name = c.female ? PICK(g, FEMALE) : PICK(g, MALE);
    c2.name = c2.female ? PICK(g, FEMALE) : PICK(g, MALE);
    if (c2.name == c.name) c2.name = c.female == c2.female ? (c.female ? "Greta" : "Karl") : c2.name;
    start(g); word(g, "Once there was"); en_np(g, 0, PICK(g, EN_ADJ_P), c.job); word(g, "named");
    word(g, c.name); word(g, "who lived"); word(g, pct(g, 50) ? "in" : "near");
    en_np(g, 0, MAYBE(g, 70, EN_ADJ_L), PICK(g, EN_HOME)); punct(g, ".");
    for (int i = between(g, 3, 5); i > 0; i--) en_sentence(g, &c, NULL);
    endline(g);
    start(g); word(g, pct(g, 50) ? "One day," : "Then,"); en_ref(g, &c); word(g, "met");
    en_np(g, 0, PICK(g, EN_ADJ_P), c2.job); word(g, "named"); word(g, c2.name); punct(g, ".");
    for (int i = between(g, 4, 6); i > 0; i--) en_sentence(g, &c, &c2);
    endline(g);
    if (pct(g, 75)) {
        for (int i = between(g, 2, 3); i > 0; i--) en_sentence(g, &c, &c2);
        start(g);
        switch (below(g, 3)) {
        case 0: word(g, "In the end,"); en_ref(g, &c); word(g, "went home"); break;
        case 1: word(g, "From that day on,"); word(g, c.name); word(g, "never forgot the");
                word(g, PICK(g, EN_THING)); break;
        default: word(g, "It had been a long day"); break;
        }
        punct(g, ".");
        endline(g);
    }
}
static void en_news(gen *g) {
    const char *city = PICK(g, CITY);
    start(g);
    switch (below(g, 5)) {
    case 0: word(g, city); word(g, "council approves new"); word(g, PICK(g, EN_PUB)); break;
    case 1: word(g, "Storm closes roads near"); word(g, city); break;
    case 2: word(g, city); word(g, PICK(g, EN_PUB)); word(g, "to reopen in"); word(g, PICK(g, MONTH)); break;
    case 3: word(g, "Prices of"); word(g, PICK(g, EN_GOODS)); word(g, "rise in"); word(g, city); break;
    default: word(g, "Fire in"); word(g, city); punct(g, ":"); num(g, (uint64_t)between(g, 2, 40));
             word(g, "people rescued"); break;
    }
    endline(g);
    for (int i = between(g, 5, 9); i > 0; i--) {
        start(g);
        switch (below(g, 10)) {
        case 0: word(g, "The city council of"); word(g, city); word(g, "voted on"); word(g, PICK(g, DAY));
                word(g, "to"); word(g, (const char *[]){"repair", "build", "close", "expand", "renovate"}[below(g, 5)]);
                en_np(g, 1, MAYBE(g, 50, EN_ADJ_L), PICK(g, EN_PUB)); break;
        case 1: word(g, "Officials said the work would cost about"); num(g, (uint64_t)between(g, 2, 90));
                word(g, "million"); word(g, (const char *[]){"euros", "dollars", "pounds"}[below(g, 3)]); break;
        case 2: word(g, "Work is expected to begin in"); word(g, PICK(g, MONTH)); word(g, "and to take");
                num(g, (uint64_t)between(g, 2, 30)); word(g, "months"); break;
        case 3: word(g, pct(g, 50) ? PICK(g, MALE) : PICK(g, FEMALE)); word(g, PICK(g, SURNAME)); punct(g, ",");
                word(g, "a"); num(g, (uint64_t)between(g, 21, 79)); punct(g, "-year-old"); word(g, PICK(g, JOB));
                word(g, "from"); word(g, city); punct(g, ","); word(g, "said the plan was");
                word(g, (const char *[]){"a good idea", "a mistake", "long overdue", "too expensive",
                                         "good news for the town", "a waste of money"}[below(g, 6)]); break;
        case 4: word(g, "According to the police,"); num(g, (uint64_t)between(g, 2, 60)); word(g, "people were");
                word(g, (const char *[]){"injured", "rescued", "evacuated"}[below(g, 3)]); word(g, "after");
                word(g, (const char *[]){"a storm", "a fire", "a flood", "heavy rain"}[below(g, 4)]);
                word(g, "on"); word(g, PICK(g, DAY)); break;
        case 5: word(g, "Sales of"); word(g, PICK(g, EN_GOODS)); word(g, "rose by"); num(g, (uint64_t)between(g, 2, 25));
                word(g, "percent in"); word(g, PICK(g, MONTH)); punct(g, ","); word(g, "the company reported"); break;
        case 6: word(g, "Local residents"); word(g, (const char *[]){"welcomed", "criticised", "questioned", "supported"}[below(g, 4)]);
                word(g, "the decision"); break;
        case 7: word(g, "The mayor,"); word(g, pct(g, 50) ? PICK(g, MALE) : PICK(g, FEMALE)); word(g, PICK(g, SURNAME));
                punct(g, ","); word(g, "told reporters that the"); word(g, PICK(g, EN_PUB)); word(g, "would reopen in");
                word(g, PICK(g, MONTH)); break;
        case 8: word(g, "Temperatures are expected to reach"); num(g, (uint64_t)between(g, 3, 38));
                word(g, "degrees on"); word(g, PICK(g, DAY)); break;
        default: word(g, "More than"); num(g, (uint64_t)between(g, 20, 900)); word(g, "people attended a meeting at the");
                 word(g, PICK(g, EN_PUB)); word(g, "on"); word(g, PICK(g, DAY)); word(g, "evening"); break;
        }
        punct(g, ".");
    }
    endline(g);
}

/* ------------------------------------------------------------ german */

enum { M, F, N };                   /* grammatical gender */
enum { NOM, ACC, DAT };             /* case */
typedef struct de_noun { uint8_t g; const char *w; } de_noun;
typedef struct de_place { uint8_t g; const char *w; const char *loc; } de_place;

static const char *const DE_DEF[3][3] = {{"der", "die", "das"}, {"den", "die", "das"}, {"dem", "der", "dem"}};
static const char *const DE_IND[3][3] = {{"ein", "eine", "ein"}, {"einen", "eine", "ein"}, {"einem", "einer", "einem"}};
static const char *const DE_WEAK[3][3] = {{"e", "e", "e"}, {"en", "e", "e"}, {"en", "en", "en"}};
static const char *const DE_MIX[3][3] = {{"er", "e", "es"}, {"en", "e", "es"}, {"en", "en", "en"}};
static const char *const DE_PRON[3][3] = {{"er", "sie", "es"}, {"ihn", "sie", "es"}, {"ihm", "ihr", "ihm"}};

static const char *const DE_MALE[] = {
    "Hans", "Karl", "Lukas", "Felix", "Paul", "Jonas", "Emil", "Otto", "Fritz", "Georg",
    "Peter", "Stefan", "Thomas", "Michael", "Jakob", "Anton", "Max", "Leon", "Moritz",
    "Franz", "Heinrich", "Ludwig", "Konrad", "Tobias", "Florian"};
static const char *const DE_FEMALE[] = {
    "Greta", "Anna", "Lena", "Marie", "Sophie", "Clara", "Emma", "Frieda", "Hanna", "Ida",
    "Lotte", "Paula", "Rosa", "Martha", "Helga", "Ursula", "Sabine", "Julia", "Katharina",
    "Elisabeth", "Johanna", "Luise", "Mia", "Leonie", "Nina"};
static const char *const DE_JOB_M[] = {
    "Bäcker", "Fischer", "Lehrer", "Arzt", "König", "Händler", "Maler", "Schneider",
    "Müller", "Jäger", "Koch", "Schmied", "Förster", "Kapitän", "Wirt", "Fahrer",
    "Bürgermeister", "Dichter", "Sänger", "Gärtner", "Schuster", "Zimmermann", "Tischler",
    "Richter", "Schäfer", "Ritter", "Uhrmacher", "Musiker", "Seemann", "Kaufmann"};
static const char *const DE_JOB_F[] = {
    "Bäckerin", "Lehrerin", "Ärztin", "Königin", "Malerin", "Köchin", "Gärtnerin",
    "Sängerin", "Händlerin", "Schneiderin", "Wirtin", "Fischerin", "Försterin", "Richterin",
    "Dichterin", "Musikerin", "Näherin", "Hebamme", "Witwe", "Prinzessin", "Bäuerin",
    "Kapitänin", "Fahrerin", "Tänzerin", "Weberin"};
static const char *const DE_ADJ_P[] = {
    "alt", "jung", "klein", "groß", "müde", "freundlich", "still", "fröhlich", "traurig",
    "klug", "arm", "reich", "fremd", "glücklich", "ruhig", "mutig", "ehrlich", "fleißig",
    "neugierig", "höflich", "stolz", "hungrig", "weise", "lustig", "nett", "streng",
    "geduldig", "einsam", "schüchtern", "zornig"};
static const char *const DE_ADJ_T[] = {
    "klein", "groß", "alt", "neu", "rot", "grün", "blau", "weiß", "schwarz", "schwer",
    "leicht", "schön", "leer", "voll", "billig", "rund", "bunt", "hölzern", "golden",
    "silbern", "seltsam", "sauber", "schmutzig", "nass", "warm", "winzig", "glänzend",
    "wertvoll", "zerbrochen", "verloren"};
static const char *const DE_ADJ_L[] = {
    "klein", "groß", "alt", "still", "ruhig", "laut", "hell", "leer", "fern", "schön",
    "grün", "kalt", "neblig", "berühmt", "einsam", "verlassen", "versteckt", "sonnig",
    "breit", "schmal", "neu", "eng"};
static const de_noun DE_THING[] = {
    {N, "Buch"}, {M, "Brief"}, {M, "Tisch"}, {M, "Stuhl"}, {F, "Lampe"}, {F, "Tasche"},
    {M, "Schlüssel"}, {M, "Apfel"}, {N, "Brot"}, {M, "Kuchen"}, {M, "Korb"}, {M, "Hut"},
    {M, "Mantel"}, {M, "Ring"}, {M, "Spiegel"}, {M, "Teller"}, {F, "Tasse"}, {F, "Flasche"},
    {F, "Kiste"}, {F, "Karte"}, {F, "Zeitung"}, {F, "Uhr"}, {F, "Kerze"}, {F, "Decke"},
    {N, "Messer"}, {N, "Seil"}, {N, "Bild"}, {N, "Boot"}, {N, "Fahrrad"}, {N, "Geschenk"},
    {N, "Heft"}, {N, "Glas"}, {F, "Glocke"}, {M, "Eimer"}, {M, "Hammer"}, {F, "Laterne"},
    {N, "Tuch"}, {M, "Schal"}, {F, "Münze"}, {F, "Feder"}};
static const de_noun DE_ANIMAL[] = {
    {M, "Hund"}, {F, "Katze"}, {N, "Pferd"}, {M, "Vogel"}, {M, "Fuchs"}, {M, "Wolf"},
    {M, "Esel"}, {F, "Ziege"}, {F, "Kuh"}, {N, "Huhn"}, {N, "Schaf"}, {F, "Maus"},
    {F, "Eule"}, {F, "Ente"}, {N, "Schwein"}, {M, "Frosch"}, {N, "Reh"}, {N, "Eichhörnchen"}};
static const de_place DE_PLACE[] = {
    {M, "Wald", "in"}, {M, "Garten", "in"}, {M, "Markt", "auf"}, {M, "Bahnhof", "an"},
    {M, "Hafen", "in"}, {M, "Berg", "auf"}, {M, "Fluss", "an"}, {M, "See", "an"},
    {M, "Park", "in"}, {F, "Stadt", "in"}, {F, "Kirche", "in"}, {F, "Schule", "in"},
    {F, "Brücke", "auf"}, {F, "Küche", "in"}, {F, "Straße", "auf"}, {F, "Wiese", "auf"},
    {F, "Mühle", "in"}, {F, "Insel", "auf"}, {N, "Dorf", "in"}, {N, "Haus", "in"},
    {N, "Schloss", "in"}, {N, "Feld", "auf"}, {N, "Meer", "an"}, {N, "Rathaus", "in"},
    {N, "Museum", "in"}, {N, "Café", "in"}, {N, "Hotel", "in"}, {N, "Ufer", "an"},
    {F, "Bäckerei", "in"}, {M, "Turm", "auf"}};
static const de_noun DE_HOME[] = {{N, "Dorf"}, {F, "Stadt"}, {N, "Tal"}, {F, "Hütte"},
                                  {N, "Haus"}, {F, "Mühle"}, {M, "Hof"}, {N, "Schloss"}};
static const de_noun DE_PUB[] = {
    {F, "Brücke"}, {M, "Bahnhof"}, {F, "Bibliothek"}, {N, "Krankenhaus"}, {M, "Park"},
    {F, "Schule"}, {N, "Museum"}, {N, "Stadion"}, {M, "Hafen"}, {N, "Schwimmbad"},
    {N, "Rathaus"}, {N, "Theater"}, {F, "Markthalle"}};
static const char *const DE_CITY[] = {
    "Berlin", "Hamburg", "München", "Köln", "Bremen", "Dresden", "Leipzig", "Hannover",
    "Nürnberg", "Stuttgart", "Bonn", "Kiel", "Rostock", "Freiburg", "Ulm", "Münster",
    "Göttingen", "Kassel", "Erfurt", "Trier", "Lübeck", "Potsdam", "Augsburg", "Würzburg",
    "Mainz", "Wien", "Graz", "Zürich", "Basel", "Linz"};
static const char *const DE_DAY[] = {"Montag", "Dienstag", "Mittwoch", "Donnerstag",
                                     "Freitag", "Samstag", "Sonntag"};
static const char *const DE_MONTH[] = {"Januar", "Februar", "März", "April", "Mai", "Juni",
                                       "Juli", "August", "September", "Oktober", "November",
                                       "Dezember"};
static const char *const DE_GOODS[] = {"Brot", "Kaffee", "Milch", "Benzin", "Strom", "Obst",
                                       "Gemüse", "Butter", "Holz", "Käse"};
static const char *const DE_VT[] = {
    "sah", "fand", "kaufte", "trug", "suchte", "brachte", "holte", "verkaufte", "verlor",
    "nahm", "hielt", "zeigte", "versteckte", "bemerkte", "vergaß", "packte", "hob",
    "bewunderte", "betrachtete", "wusch", "reparierte", "malte", "putzte"};
static const char *const DE_VM[] = {"ging", "lief", "fuhr", "kam", "eilte", "wanderte",
                                    "rannte", "ritt", "schlich", "spazierte"};
static const char *const DE_VI[] = {"schlief", "lachte", "wartete", "sang", "arbeitete",
                                    "weinte", "las", "träumte", "tanzte", "ruhte", "saß",
                                    "spielte", "blieb", "schrieb"};
static const char *const DE_TIME[] = {
    "Am Morgen", "Am Abend", "Am nächsten Tag", "Später", "Danach", "Plötzlich",
    "Eines Tages", "Im Winter", "Im Sommer", "Nach dem Essen", "Am Sonntag", "Gegen Mittag",
    "Bald", "In der Nacht", "Kurz darauf", "Am Nachmittag", "Zwei Tage später",
    "Jeden Morgen", "Im Herbst", "Im Frühling"};
static const char *const DE_WEIL[] = {
    "weil es spät war", "weil es regnete", "weil der Weg lang war",
    "weil der Laden geschlossen war", "weil es sehr kalt war", "weil niemand zu Hause war",
    "weil die Sonne schien", "weil der Wind stark war", "weil der Fluss hoch war",
    "weil das Brot alle war", "weil die Tür verschlossen war", "weil der Winter kam"};
static const char *const DE_ALS[] = {
    "als die Sonne unterging", "als die Glocke läutete", "als es dunkel wurde",
    "als der Zug ankam", "als es zu schneien begann", "als der Markt öffnete",
    "als die Uhr neun schlug", "als der Regen aufhörte", "als das Schiff einlief"};
static const char *const DE_UTTER[] = {
    "Wir müssen jetzt gehen", "Das ist aber seltsam", "Wo ist mein Hut?", "Komm schnell!",
    "Ich habe Hunger", "Hast du das gesehen?", "Es wird bald regnen",
    "Was für ein schöner Tag!", "Ich weiß es nicht", "Warte auf mich!", "Das gehört mir",
    "Wie spät ist es?", "Sei vorsichtig!", "Danke schön", "Niemand darf es erfahren",
    "Morgen fahren wir in die Stadt", "Wer hat das getan?", "Das ist eine gute Idee",
    "Hilfe!", "Ich komme gleich zurück", "Sieh dir den Himmel an", "Ist da jemand?"};
static const char *const DE_ANIMAL_DO[] = {
    "schlief in der Sonne", "lief über die Straße", "wartete vor der Tür",
    "sprang über den Zaun", "saß auf dem Dach", "versteckte sich unter der Brücke",
    "trank aus dem Fluss", "fraß einen Apfel", "bellte den Mond an", "folgte dem Wagen"};
static const char *const DE_WEATHER[] = {"kalt", "warm", "grau", "hell", "windig", "still",
                                         "neblig", "stürmisch", "klar", "sonnig"};
static const char *const DE_REACT[] = {"lächelte", "lachte", "seufzte", "nickte", "staunte",
                                       "schwieg"};

/* adjective stem + ending; a stem ending in e drops the ending's e */
static void de_adj(gen *g, const char *stem, const char *end) {
    word(g, stem);
    size_t l = strlen(stem);
    put(g, stem[l - 1] == 'e' && end[0] == 'e' ? end + 1 : end);
}
/* article [adj] noun in case cs; def 1 definite, 0 indefinite */
static void de_np(gen *g, int def, int cs, const char *adj, uint8_t gd, const char *noun) {
    word(g, def ? DE_DEF[cs][gd] : DE_IND[cs][gd]);
    if (adj) de_adj(g, adj, def ? DE_WEAK[cs][gd] : DE_MIX[cs][gd]);
    word(g, noun);
}
/* preposition + definite article, contracted where German contracts */
static void de_pp(gen *g, const char *prep, int cs, const char *adj, uint8_t gd, const char *noun) {
    const char *c = NULL;
    if (cs == DAT && gd != F) {
        if (!strcmp(prep, "zu")) c = "zum";
        else if (!strcmp(prep, "in")) c = "im";
        else if (!strcmp(prep, "an")) c = "am";
        else if (!strcmp(prep, "von")) c = "vom";
        else if (!strcmp(prep, "bei")) c = "beim";
    } else if (cs == DAT && !strcmp(prep, "zu")) c = "zur";
    else if (cs == ACC && gd == N && !strcmp(prep, "in")) c = "ins";
    if (c) {
        word(g, c);
        if (adj) de_adj(g, adj, DE_WEAK[cs][gd]);
        word(g, noun);
    } else {
        word(g, prep);
        de_np(g, 1, cs, adj, gd, noun);
    }
}

typedef struct de_person { const char *name; uint8_t gd; const char *job; } de_person;

static void de_ref(gen *g, const de_person *c, int cs) {
    int k = (int)below(g, 100);
    if (k < 45) word(g, c->name);
    else if (k < 80) word(g, DE_PRON[cs][c->gd]);
    else { word(g, DE_DEF[cs][c->gd]); word(g, c->job); }
}
/* subject + verb, or fronted time phrase + verb + subject (verb second) */
static void de_subj_verb(gen *g, const de_person *c, const char *verb) {
    if (pct(g, 35)) { word(g, PICK(g, DE_TIME)); word(g, verb); de_ref(g, c, NOM); }
    else { de_ref(g, c, NOM); word(g, verb); }
}
static void de_clause(gen *g) {
    int k = (int)below(g, 100);
    if (k < 12) { punct(g, ","); word(g, PICK(g, DE_WEIL)); }
    else if (k < 20) { punct(g, ","); word(g, PICK(g, DE_ALS)); }
    else if (k < 26) {
        const de_noun *a = &PICK(g, DE_ANIMAL);
        punct(g, ","); word(g, "weil"); de_np(g, 1, NOM, NULL, a->g, a->w);
        word(g, PICK(g, DE_ADJ_P)); word(g, "war");
    }
}
static void de_sentence(gen *g, const de_person *c, const de_person *c2) {
    start(g);
    const de_noun *t = &PICK(g, DE_THING);
    const de_place *p = &PICK(g, DE_PLACE);
    switch (below(g, 11)) {
    case 0:
        de_subj_verb(g, c, PICK(g, DE_VM));
        if (pct(g, 70)) de_pp(g, "zu", DAT, MAYBE(g, 40, DE_ADJ_L), p->g, p->w);
        else de_pp(g, "in", ACC, MAYBE(g, 40, DE_ADJ_L), p->g, p->w); /* direction: accusative */
        de_clause(g); break;
    case 1:
        de_subj_verb(g, c, PICK(g, DE_VT));
        de_np(g, pct(g, 30), ACC, MAYBE(g, 60, DE_ADJ_T), t->g, t->w);
        if (pct(g, 50)) de_pp(g, p->loc, DAT, NULL, p->g, p->w);
        de_clause(g); break;
    case 2:
        de_subj_verb(g, c, PICK(g, DE_VI));
        if (pct(g, 60)) de_pp(g, p->loc, DAT, MAYBE(g, 30, DE_ADJ_L), p->g, p->w);
        else word(g, pct(g, 50) ? "eine Weile" : "bis zum Abend");
        break;
    case 3: {
        const de_noun *a = &PICK(g, DE_ANIMAL);
        de_subj_verb(g, c, "sah"); de_np(g, 0, ACC, MAYBE(g, 60, DE_ADJ_P), a->g, a->w);
        de_pp(g, p->loc, DAT, NULL, p->g, p->w); break;
    }
    case 4: {
        const de_noun *a = &PICK(g, DE_ANIMAL);
        de_np(g, pct(g, 50), NOM, MAYBE(g, 50, DE_ADJ_P), a->g, a->w); word(g, PICK(g, DE_ANIMAL_DO)); break;
    }
    case 5: {
        const char *u = PICK(g, DE_UTTER);
        char last = u[strlen(u) - 1];
        word(g, "\""); g->space = 0; start(g); put(g, u); punct(g, "\","); g->space = 1;
        word(g, last == '?' ? "fragte" : last == '!' ? "rief" : "sagte");
        if (pct(g, 40)) word(g, DE_PRON[NOM][c->gd]);
        else if (pct(g, 70)) word(g, c->name);
        else { word(g, DE_DEF[NOM][c->gd]); word(g, c->job); }
        break;
    }
    case 6:
        de_ref(g, c, NOM); word(g, pct(g, 50) ? "dachte," : "sagte,"); word(g, "dass");
        if (pct(g, 50)) { de_np(g, 1, NOM, NULL, t->g, t->w); word(g, PICK(g, DE_ADJ_T)); }
        else { de_np(g, 1, NOM, NULL, p->g, p->w); word(g, PICK(g, DE_ADJ_L)); }
        word(g, "war"); break;
    case 7:
        word(g, "Es war"); de_np(g, 0, NOM, PICK(g, DE_WEATHER), M,
                                 (const char *[]){"Morgen", "Tag", "Abend", "Winter", "Sommer"}[below(g, 5)]);
        break;
    case 8:
        if (!c2) { de_ref(g, c, NOM); word(g, "betrachtete"); de_np(g, 1, ACC, NULL, t->g, t->w); break; }
        if (pct(g, 50)) {
            word(g, c2->name); word(g, "gab"); if (pct(g, 50)) word(g, c->name); else word(g, DE_PRON[DAT][c->gd]);
            de_np(g, 0, ACC, MAYBE(g, 60, DE_ADJ_T), t->g, t->w);
        } else {
            de_ref(g, c, NOM); word(g, "und"); word(g, c2->name);
            word(g, (const char *[]){"gingen", "liefen", "fuhren", "wanderten"}[below(g, 4)]);
            word(g, "zusammen"); de_pp(g, "zu", DAT, NULL, p->g, p->w);
        }
        break;
    default:
        de_ref(g, c, NOM); word(g, "nahm"); de_np(g, 1, ACC, NULL, t->g, t->w); word(g, "und");
        word(g, PICK(g, DE_REACT)); break;
    }
    punct(g, ".");
}
static void de_story(gen *g) {
    de_person c, c2;
    c.gd = pct(g, 50) ? M : F;
    c.name = c.gd == M ? PICK(g, DE_MALE) : PICK(g, DE_FEMALE);
    c.job = c.gd == M ? PICK(g, DE_JOB_M) : PICK(g, DE_JOB_F);
    c2.gd = pct(g, 50) ? M : F;
    c2.name = c2.gd == M ? PICK(g, DE_MALE) : PICK(g, DE_FEMALE);
    c2.job = c2.gd == M ? PICK(g, DE_JOB_M) : PICK(g, DE_JOB_F);
    if (c2.name == c.name) c2.name = c.gd == M ? "Wilhelm" : "Gertrud";
    const de_noun *h = &PICK(g, DE_HOME);
    start(g); word(g, "Es war einmal"); de_np(g, 0, NOM, PICK(g, DE_ADJ_P), c.gd, c.job);
    punct(g, ","); word(g, DE_DEF[NOM][c.gd]); word(g, "in");
    de_np(g, 0, DAT, MAYBE(g, 70, DE_ADJ_L), h->g, h->w); word(g, "wohnte"); punct(g, ".");
    start(g); de_np(g, 1, NOM, NULL, c.gd, c.job); word(g, "hieß"); word(g, c.name); punct(g, ".");
    for (int i = between(g, 2, 4); i > 0; i--) de_sentence(g, &c, NULL);
    endline(g);
    start(g); word(g, pct(g, 50) ? "Eines Tages traf" : "Dann traf"); de_ref(g, &c, NOM);
    de_np(g, 0, ACC, PICK(g, DE_ADJ_P), c2.gd, c2.job); word(g, "namens"); word(g, c2.name); punct(g, ".");
    for (int i = between(g, 4, 6); i > 0; i--) de_sentence(g, &c, &c2);
    endline(g);
    if (pct(g, 75)) {
        for (int i = between(g, 2, 3); i > 0; i--) de_sentence(g, &c, &c2);
        start(g);
        switch (below(g, 3)) {
        case 0: word(g, "Am Ende ging"); de_ref(g, &c, NOM); word(g, "nach Hause"); break;
        case 1: {
            const de_noun *t = &PICK(g, DE_THING);
            word(g, "Von diesem Tag an vergaß"); word(g, c.name); de_np(g, 1, ACC, NULL, t->g, t->w);
            word(g, "nie"); break;
        }
        default: word(g, "Es war ein langer Tag gewesen"); break;
        }
        punct(g, ".");
        endline(g);
    }
}
static void de_news(gen *g) {
    const char *city = PICK(g, DE_CITY);
    const de_noun *pb = &PICK(g, DE_PUB);
    start(g);
    switch (below(g, 4)) {
    case 0: word(g, city); word(g, "baut"); de_np(g, 0, ACC, "neu", pb->g, pb->w); break;
    case 1: word(g, "Sturm sperrt Straßen bei"); word(g, city); break;
    case 2: word(g, "Preise für"); word(g, PICK(g, DE_GOODS)); word(g, "steigen in"); word(g, city); break;
    default: word(g, "Feuer in"); word(g, city); punct(g, ":"); num(g, (uint64_t)between(g, 2, 40));
             word(g, "Menschen gerettet"); break;
    }
    endline(g);
    for (int i = between(g, 5, 9); i > 0; i--) {
        start(g);
        int fem = pct(g, 50);
        switch (below(g, 10)) {
        case 0: word(g, "Der Stadtrat von"); word(g, city); word(g, "beschloss am"); word(g, PICK(g, DE_DAY));
                punct(g, ","); de_np(g, 1, ACC, MAYBE(g, 60, DE_ADJ_L), pb->g, pb->w); word(g, "zu");
                word(g, (const char *[]){"reparieren", "bauen", "schließen", "erweitern", "renovieren"}[below(g, 5)]); break;
        case 1: word(g, "Die Kosten liegen nach Angaben der Stadt bei etwa"); num(g, (uint64_t)between(g, 2, 90));
                word(g, "Millionen Euro"); break;
        case 2: word(g, "Die Arbeiten sollen im"); word(g, PICK(g, DE_MONTH)); word(g, "beginnen und");
                num(g, (uint64_t)between(g, 2, 30)); word(g, "Monate dauern"); break;
        case 3: word(g, fem ? PICK(g, DE_FEMALE) : PICK(g, DE_MALE)); word(g, PICK(g, SURNAME)); punct(g, ",");
                word(g, fem ? "eine" : "ein"); num(g, (uint64_t)between(g, 21, 79)); punct(g, fem ? "-jährige" : "-jähriger");
                word(g, fem ? PICK(g, DE_JOB_F) : PICK(g, DE_JOB_M)); word(g, "aus"); word(g, city); punct(g, ",");
                word(g, "sagte, der Plan sei");
                word(g, (const char *[]){"eine gute Idee", "ein Fehler", "längst überfällig", "viel zu teuer",
                                         "gut für die Stadt", "Geldverschwendung"}[below(g, 6)]); break;
        case 4: word(g, "Nach Angaben der Polizei wurden am"); word(g, PICK(g, DE_DAY)); num(g, (uint64_t)between(g, 2, 60));
                word(g, "Menschen"); word(g, (const char *[]){"verletzt", "gerettet", "evakuiert"}[below(g, 3)]); break;
        case 5: word(g, "Die Preise für"); word(g, PICK(g, DE_GOODS)); word(g, "stiegen im"); word(g, PICK(g, DE_MONTH));
                word(g, "um"); num(g, (uint64_t)between(g, 2, 25)); word(g, "Prozent"); break;
        case 6: word(g, "Viele Anwohner"); word(g, (const char *[]){"begrüßten", "kritisierten", "unterstützten"}[below(g, 3)]);
                word(g, "die Entscheidung"); break;
        case 7: word(g, fem ? "Die Bürgermeisterin" : "Der Bürgermeister"); word(g, fem ? PICK(g, DE_FEMALE) : PICK(g, DE_MALE));
                word(g, PICK(g, SURNAME)); word(g, "sagte,"); de_np(g, 1, NOM, NULL, pb->g, pb->w);
                word(g, "werde im"); word(g, PICK(g, DE_MONTH)); word(g, "wieder öffnen"); break;
        case 8: word(g, "Am"); word(g, PICK(g, DE_DAY)); word(g, "werden Temperaturen von bis zu");
                num(g, (uint64_t)between(g, 3, 38)); word(g, "Grad erwartet"); break;
        default: word(g, "Mehr als"); num(g, (uint64_t)between(g, 20, 900)); word(g, "Menschen kamen am");
                 word(g, PICK(g, DE_DAY)); put(g, "abend zu einer Versammlung im Rathaus"); break;
        }
        punct(g, ".");
    }
    endline(g);
}

/* ------------------------------------------------------------ code (Python) */

typedef struct py_var { const char *name; int list; int fixed; } py_var;
typedef struct py {
    gen *g;
    py_var v[48];             /* variables in scope */
    int nv;
    const char *ilist[8];     /* for i in range(len(ilist[j])): ivar[j] indexes it */
    const char *ivar[8];
    int nidx;
    int loops;                /* enclosing loops */
    int in_while;             /* the innermost loop is a while (no continue) */
} py;

static const char *const PY_INT[] = {
    "total", "count", "result", "best", "value", "score", "acc", "low", "high", "mid",
    "delta", "step_size", "offset", "level", "width", "height", "weight", "cost", "price",
    "hits", "misses", "largest", "smallest", "current", "previous", "tmp", "span", "gap"};
static const char *const PY_LIST[] = {"out", "seen", "parts", "pairs", "buf", "stack",
                                      "queue", "evens", "odds", "chunk", "found", "rows",
                                      "picked", "kept", "diffs", "window"};
static const char *const PY_LPARAM[] = {"items", "values", "scores", "numbers", "prices",
                                        "weights", "counts", "sizes", "data", "nums",
                                        "heights", "samples", "ages", "readings", "lengths"};
static const char *const PY_IPARAM[] = {"n", "limit", "size", "k", "step", "threshold",
                                        "start", "stop", "factor", "target", "base", "depth"};
static const char *const PY_LOOP[] = {"i", "j", "idx", "pos"};
static const char *const PY_ITEM[] = {"x", "item", "v", "num", "entry", "elem"};
static const char *const PY_VERB[] = {"compute", "find", "count", "sum", "scale", "filter",
                                      "merge", "update", "check", "build", "collect", "split",
                                      "normalize", "clip", "rank", "group", "average",
                                      "select", "shift", "mark", "trim", "pick", "score"};
static const char *const PY_NOUN[] = {"total", "max", "min", "values", "items", "scores",
                                      "pairs", "evens", "prices", "weights", "steps", "peaks",
                                      "gaps", "runs", "ranges", "outliers", "window", "chunks",
                                      "counts", "limits", "totals"};
static const char *const PY_CLASS[] = {"Counter", "Buffer", "Tracker", "Inventory", "Ledger",
                                       "Scoreboard", "Histogram", "Cache", "Recorder", "Stats",
                                       "Pool", "Register", "Budget", "Meter", "Journal"};
static const char *const PY_METHOD[] = {"total", "mean", "largest", "count_above", "update",
                                        "report", "size", "smallest", "spread", "summary"};

static void py_indent(py *c, int ind) { for (int i = 0; i < ind; i++) raw(c->g, "    ", 4); c->g->space = 0; }
static int py_has(const py *c, const char *name) {
    for (int i = 0; i < c->nv; i++) if (!strcmp(c->v[i].name, name)) return 1;
    return 0;
}
static void py_add(py *c, const char *name, int list, int fixed) {
    if (c->nv < (int)NELEM(c->v)) c->v[c->nv++] = (py_var){name, list, fixed};
}
/* a variable of the kind (list 0/1), or NULL; fixed ones only when allowed */
static const char *py_pick(py *c, int list, int allow_fixed) {
    int cand[48], n = 0;
    for (int i = 0; i < c->nv; i++)
        if (c->v[i].list == list && (allow_fixed || !c->v[i].fixed)) cand[n++] = i;
    return n ? c->v[cand[below(c->g, (uint32_t)n)]].name : NULL;
}
/* a fresh name from list, or NULL when all are taken */
static const char *py_fresh(py *c, const char *const *names, size_t n) {
    for (int tries = 0; tries < 8; tries++) {
        const char *s = names[below(c->g, (uint32_t)n)];
        if (!py_has(c, s)) return s;
    }
    return NULL;
}
static void py_atom(py *c) {
    gen *g = c->g;
    int k = (int)below(g, 10);
    const char *v = py_pick(c, 0, 1), *l = py_pick(c, 1, 1);
    if (k < 2 && c->nidx) { int j = (int)below(g, (uint32_t)c->nidx); put(g, c->ilist[j]); put(g, "["); put(g, c->ivar[j]); put(g, "]"); }
    else if (k < 6 && v) put(g, v);
    else if (k < 7 && l) { put(g, "len("); put(g, l); put(g, ")"); }
    else put_uint(g, below(g, 10) < 7 ? below(g, 10) : below(g, 100));
}
static void py_expr(py *c) {
    gen *g = c->g;
    int k = (int)below(g, 10);
    const char *l = py_pick(c, 1, 1);
    if (k < 4) py_atom(c);
    else if (k < 7) {
        py_atom(c);
        int op = (int)below(g, 5);
        put(g, (const char *[]){" + ", " - ", " * ", " // ", " % "}[op]);
        if (op >= 3) put_uint(g, 2 + below(g, 8)); else py_atom(c);
    } else if (k < 8) { put(g, pct(g, 50) ? "max(" : "min("); py_atom(c); put(g, ", "); py_atom(c); put(g, ")"); }
    else if (k < 9 && l) { put(g, "sum("); put(g, l); put(g, ")"); }
    else { put(g, "abs("); py_atom(c); put(g, " - "); py_atom(c); put(g, ")"); }
}
static void py_cond(py *c) {
    gen *g = c->g;
    int k = (int)below(g, 10);
    const char *l = py_pick(c, 1, 1);
    if (k < 5) { py_atom(c); put(g, (const char *[]){" > ", " < ", " >= ", " == ", " != "}[below(g, 5)]); py_atom(c); }
    else if (k < 7) { py_atom(c); put(g, " % 2 == 0"); }
    else if (k < 8 && l) { py_atom(c); put(g, " in "); put(g, l); }
    else if (k < 9 && l) { put(g, "not "); put(g, l); }
    else { py_atom(c); put(g, " > 0 and "); py_atom(c); put(g, " < "); put_uint(g, 10 + below(g, 90)); }
}
static void py_block(py *c, int ind, int depth, int lo, int hi);

/* one statement (or a comment); returns 0 when it wrote no statement */
static int py_stmt(py *c, int ind, int depth) {
    gen *g = c->g;
    int k = (int)below(g, 20);
    if (depth >= 3 && k >= 11) k = (int)below(g, 11);
    const char *iv = py_pick(c, 0, 0), *lv = py_pick(c, 1, 1);
    if (k < 3) { /* new int */
        const char *nm = py_fresh(c, PY_INT, NELEM(PY_INT));
        if (!nm) nm = iv;
        if (!nm) return 0;
        py_indent(c, ind); put(g, nm); put(g, " = "); py_expr(c); endline(g);
        if (!py_has(c, nm)) py_add(c, nm, 0, 0);
    } else if (k < 5 && iv) {
        py_indent(c, ind); put(g, iv); put(g, (const char *[]){" += ", " -= ", " += ", " *= "}[below(g, 4)]);
        py_expr(c); endline(g);
    } else if (k < 7) { /* new list */
        const char *nm = py_fresh(c, PY_LIST, NELEM(PY_LIST));
        if (!nm) return 0;
        py_indent(c, ind); put(g, nm); put(g, " = ");
        int m = (int)below(g, 5);
        if (m == 0 || !lv) put(g, "[]");
        else if (m == 1) { put(g, "sorted("); put(g, lv); put(g, ")"); }
        else if (m == 2) { put(g, "list("); put(g, lv); put(g, ")"); }
        else {
            const char *x = py_fresh(c, PY_ITEM, NELEM(PY_ITEM));
            if (!x) x = "x";
            put(g, "["); put(g, x); put(g, (const char *[]){" * ", " + ", " - "}[below(g, 3)]);
            put_uint(g, 1 + below(g, 9)); put(g, " for "); put(g, x); put(g, " in "); put(g, lv);
            if (m == 4) { put(g, " if "); put(g, x); put(g, " > "); py_atom(c); }
            put(g, "]");
        }
        endline(g);
        py_add(c, nm, 1, 0);
    } else if (k < 9 && py_pick(c, 1, 0)) {
        py_indent(c, ind); put(g, py_pick(c, 1, 0)); put(g, ".append("); py_expr(c); put(g, ")"); endline(g);
    } else if (k < 10) {
        py_indent(c, ind); put(g, "print(");
        const char *v = py_pick(c, 0, 1);
        if (v && pct(g, 60)) { put(g, "\""); put(g, v); put(g, ":\", "); put(g, v); }
        else py_expr(c);
        put(g, ")"); endline(g);
    } else if (k < 11 && c->loops && depth > 1) {
        py_indent(c, ind); put(g, "if "); py_cond(c); put(g, ":"); endline(g);
        py_indent(c, ind + 1); put(g, pct(g, 50) || c->in_while ? "break" : "continue"); endline(g);
    } else if (k < 11) {
        py_indent(c, ind); put(g, "# "); put(g, PICK(g, PY_VERB)); put(g, " the ");
        put(g, PICK(g, PY_NOUN)); endline(g);
        return 0;
    } else if (k < 14) { /* if / elif / else */
        py_indent(c, ind); put(g, "if "); py_cond(c); put(g, ":"); endline(g);
        py_block(c, ind + 1, depth + 1, 1, 3);
        if (pct(g, 25)) { py_indent(c, ind); put(g, "elif "); py_cond(c); put(g, ":"); endline(g); py_block(c, ind + 1, depth + 1, 1, 2); }
        if (pct(g, 40)) { py_indent(c, ind); put(g, "else:"); endline(g); py_block(c, ind + 1, depth + 1, 1, 2); }
    } else if (k < 18) { /* for */
        const char *l = py_pick(c, 1, 1);
        if (pct(g, 50) && l) {
            const char *x = py_fresh(c, PY_ITEM, NELEM(PY_ITEM));
            if (!x) return 0;
            py_indent(c, ind); put(g, "for "); put(g, x); put(g, " in "); put(g, l); put(g, ":"); endline(g);
            int nv = c->nv; py_add(c, x, 0, 1);
            int w = c->in_while; c->in_while = 0;
            c->loops++; py_block(c, ind + 1, depth + 1, 1, 4); c->loops--;
            c->in_while = w;
            c->nv = nv;
        } else {
            const char *i = py_fresh(c, PY_LOOP, NELEM(PY_LOOP));
            if (!i) return 0;
            py_indent(c, ind); put(g, "for "); put(g, i); put(g, " in range(");
            int nidx = c->nidx;
            if (l && pct(g, 60)) {
                put(g, "len("); put(g, l); put(g, ")");
                if (c->nidx < 8) { c->ilist[c->nidx] = l; c->ivar[c->nidx++] = i; }
            } else if (pct(g, 50) && py_pick(c, 0, 1)) put(g, py_pick(c, 0, 1));
            else { put_uint(g, below(g, 3)); put(g, ", "); put_uint(g, 5 + below(g, 20)); }
            put(g, "):"); endline(g);
            int nv = c->nv; py_add(c, i, 0, 1);
            int w = c->in_while; c->in_while = 0;
            c->loops++; py_block(c, ind + 1, depth + 1, 1, 4); c->loops--;
            c->in_while = w;
            c->nv = nv; c->nidx = nidx;
        }
    } else { /* while with a counter */
        const char *i = py_fresh(c, PY_LOOP, NELEM(PY_LOOP));
        if (!i) return 0;
        py_indent(c, ind); put(g, i); put(g, " = 0"); endline(g);
        py_indent(c, ind); put(g, "while "); put(g, i); put(g, " < ");
        const char *bound = py_pick(c, 0, 1);
        if (bound && pct(g, 50)) put(g, bound); else put_uint(g, 3 + below(g, 20));
        put(g, ":"); endline(g);
        int nv = c->nv; py_add(c, i, 0, 1);
        int w = c->in_while; c->in_while = 1;
        c->loops++; py_block(c, ind + 1, depth + 1, 1, 3); c->loops--;
        c->in_while = w;
        py_indent(c, ind + 1); put(g, i); put(g, " += 1"); endline(g);
        c->nv = nv;
        py_add(c, i, 0, 0);
    }
    return 1;
}
static void py_block(py *c, int ind, int depth, int lo, int hi) {
    int nv = c->nv, nidx = c->nidx;
    int real = 0;
    for (int i = between(c->g, lo, hi); i > 0; i--) real += py_stmt(c, ind, depth);
    if (!real) { py_indent(c, ind); put(c->g, "print("); py_expr(c); put(c->g, ")"); endline(c->g); }
    c->nv = nv;
    c->nidx = nidx;
}
/* "(a, b)" params: one or two lists and up to two ints, registered in scope */
static void py_params(py *c, int self) {
    gen *g = c->g;
    put(g, "(");
    if (self) put(g, "self");
    int nl = between(g, self ? 0 : 1, 2), ni = between(g, 0, 2), first = !self;
    for (int i = 0; i < nl + ni; i++) {
        const char *nm = i < nl ? py_fresh(c, PY_LPARAM, NELEM(PY_LPARAM)) : py_fresh(c, PY_IPARAM, NELEM(PY_IPARAM));
        if (!nm) continue;
        if (!first) put(g, ", ");
        first = 0;
        put(g, nm);
        py_add(c, nm, i < nl, 1);
    }
    put(g, "):");
    endline(g);
}
static void py_return(py *c, int ind) {
    gen *g = c->g;
    const char *v = py_pick(c, pct(c->g, 40), 0);
    if (!v) v = py_pick(c, 0, 1);
    if (!v) v = py_pick(c, 1, 1);
    py_indent(c, ind); put(g, "return ");
    if (v) put(g, v); else put(g, "None");
    endline(g);
}
static void py_function(gen *g) {
    py c = {.g = g};
    const char *verb = PICK(g, PY_VERB), *noun = PICK(g, PY_NOUN);
    put(g, "def "); put(g, verb); put(g, "_"); put(g, noun);
    py_params(&c, 0);
    if (pct(g, 60)) {
        const char *l = py_pick(&c, 1, 1);
        py_indent(&c, 1); put(g, "\"\"\""); start(g); put(g, verb); put(g, " the "); put(g, noun);
        put(g, " of "); put(g, l ? l : "the input"); put(g, ".\"\"\""); endline(g);
    }
    int nv = c.nv;
    for (int i = between(g, 3, 6); i > 0; i--) py_stmt(&c, 1, 1);
    py_return(&c, 1);
    c.nv = nv;
}
static void py_class(gen *g) {
    py c = {.g = g};
    const char *name = PICK(g, PY_CLASS);
    const char *lf = PICK(g, PY_LIST), *cf = PICK(g, PY_INT);
    char lself[32], cself[32];
    snprintf(lself, sizeof lself, "self.%s", lf);
    snprintf(cself, sizeof cself, "self.%s", cf);
    put(g, "class "); put(g, name); put(g, ":"); endline(g);
    py_indent(&c, 1); put(g, "def __init__(self, limit):"); endline(g);
    py_indent(&c, 2); put(g, "self.limit = limit"); endline(g);
    py_indent(&c, 2); put(g, lself); put(g, " = []"); endline(g);
    py_indent(&c, 2); put(g, cself); put(g, " = 0"); endline(g);
    py_indent(&c, 1); put(g, "def add(self, value):"); endline(g);
    py_indent(&c, 2); put(g, lself); put(g, ".append(value)"); endline(g);
    py_indent(&c, 2); put(g, cself); put(g, " += value"); endline(g);
    py_indent(&c, 2); put(g, "return len("); put(g, lself); put(g, ") <= self.limit"); endline(g);
    for (int m = between(g, 1, 2); m > 0; m--) {
        c.nv = 0;
        py_add(&c, "self.limit", 0, 1);
        py_add(&c, lself, 1, 1);
        py_add(&c, cself, 0, 1);
        py_indent(&c, 1); put(g, "def "); put(g, PICK(g, PY_METHOD));
        py_params(&c, 1);
        for (int i = between(g, 2, 4); i > 0; i--) py_stmt(&c, 2, 2);
        py_return(&c, 2);
    }
}

/* ------------------------------------------------------------ arith, records */

static void arith_doc(gen *g) {
    for (int i = between(g, 30, 55); i > 0; i--) {
        int op = (int)below(g, 3);
        uint32_t a, b, c;
        if (op == 2) {
            a = below(g, pct(g, 50) ? 10 : 100); b = below(g, pct(g, 50) ? 10 : 100); c = a * b;
        } else {
            a = below(g, (uint32_t[]){10, 100, 1000}[below(g, 3)]);
            b = below(g, (uint32_t[]){10, 100, 1000}[below(g, 3)]);
            if (op == 1 && b > a) { uint32_t t = a; a = b; b = t; }
            c = op == 0 ? a + b : a - b;
        }
        put_uint(g, a); put(g, op == 0 ? " + " : op == 1 ? " - " : " * "); put_uint(g, b);
        put(g, " = "); put_uint(g, c); endline(g);
    }
}
static void put_lower(gen *g, const char *s) {
    char b[64];
    size_t i = 0;
    for (; s[i] && i < sizeof b - 1; i++) b[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
    b[i] = 0;
    put(g, b);
}
static void records_doc(gen *g) {
    static const char *const domain[] = {"example.com", "mail.org", "post.net", "webmail.io",
                                         "inbox.de", "letters.co"};
    static const char *const city2[] = {"Hamburg", "Munich", "Cologne", "Dresden", "Leipzig",
                                        "Bremen", "Zurich", "Basel", "Lyon", "Nantes"};
    for (int i = between(g, 3, 6); i > 0; i--) {
        int fem = pct(g, 50), de = pct(g, 30);
        const char *first = de ? (fem ? PICK(g, DE_FEMALE) : PICK(g, DE_MALE)) : (fem ? PICK(g, FEMALE) : PICK(g, MALE));
        const char *last = PICK(g, SURNAME);
        put(g, "{\"name\": \""); put(g, first); put(g, " "); put(g, last);
        put(g, "\", \"age\": "); put_uint(g, (uint64_t)between(g, 18, 90));
        put(g, ", \"city\": \""); put(g, pct(g, 80) ? PICK(g, CITY) : PICK(g, city2));
        put(g, "\", \"email\": \"");
        int form = (int)below(g, 3);
        if (form == 1) { char f[2] = {(char)(first[0] + 32), 0}; put(g, f); } else put_lower(g, first);
        if (form != 2 || pct(g, 50)) put(g, ".");
        put_lower(g, last);
        if (form == 2) { put_uint(g, below(g, 10)); put_uint(g, below(g, 10)); }
        put(g, "@"); put(g, PICK(g, domain));
        put(g, "\", \"job\": \""); put(g, PICK(g, JOB));
        put(g, "\", \"active\": "); put(g, pct(g, 70) ? "true" : "false");
        put(g, "}"); endline(g);
    }
}

/* ------------------------------------------------------------ API */

static void document(gen *g, int d) {
    g->space = 0;
    g->cap_next = 0;
    switch (d) {
    case CORPUS_ENGLISH: if (pct(g, 65)) en_story(g); else en_news(g); break;
    case CORPUS_GERMAN: if (pct(g, 65)) de_story(g); else de_news(g); break;
    case CORPUS_CODE: if (pct(g, 80)) py_function(g); else py_class(g); break;
    case CORPUS_ARITH: arith_doc(g); break;
    default: records_doc(g); break;
    }
}

static const char *const NAMES[CORPUS_N_DOMAINS] = {"english", "german", "code", "arith", "records"};
static const char *const PROMPTS[CORPUS_N_DOMAINS] = {"Once there was a", "Es war einmal ein",
                                                      "def ", "37 + 85 =", "{\"name\": \""};

const char *corpus_domain_name(int d) {
    return d >= 0 && d < CORPUS_N_DOMAINS ? NAMES[d] : "?";
}
int corpus_domain_from_name(const char *name) {
    for (int d = 0; name && d < CORPUS_N_DOMAINS; d++) if (!strcmp(name, NAMES[d])) return d;
    return -1;
}
const char *corpus_domain_prompt(int d) {
    return d >= 0 && d < CORPUS_N_DOMAINS ? PROMPTS[d] : "";
}

/* domain -1: rounds of all domains in random order */
static moe_status generate(uint8_t **text, size_t *n, int domain, size_t target,
                           uint64_t seed, moe_error *err) {
    if (!text || !n) return moe_err(err, MOE_ERR_ARG, "corpus: NULL output");
    *text = NULL;
    *n = 0;
    if (target == 0 || target > CORPUS_MAX_BYTES)
        return moe_err(err, MOE_ERR_ARG, "corpus: target size %zu bytes is outside 1 .. %zu",
                       target, CORPUS_MAX_BYTES);
    gen g = {0};
    moe_rng_seed(&g.r, seed);
    g.cap = target + 4096;
    g.p = malloc(g.cap);
    if (!g.p) return moe_err(err, MOE_ERR_NOMEM, "corpus: out of memory for %zu bytes", target);
    int order[CORPUS_N_DOMAINS], at = CORPUS_N_DOMAINS;
    while (g.n < target && !g.oom) {
        int d = domain;
        if (d < 0) {
            if (at == CORPUS_N_DOMAINS) { /* a new round: Fisher-Yates shuffle */
                for (int i = 0; i < CORPUS_N_DOMAINS; i++) order[i] = i;
                for (int i = CORPUS_N_DOMAINS - 1; i > 0; i--) {
                    int j = (int)below(&g, (uint32_t)i + 1), t = order[i];
                    order[i] = order[j];
                    order[j] = t;
                }
                at = 0;
            }
            d = order[at++];
        }
        if (g.n) raw(&g, "\n", 1);
        document(&g, d);
    }
    if (g.oom) {
        free(g.p);
        return moe_err(err, MOE_ERR_NOMEM, "corpus: out of memory at %zu bytes", g.n);
    }
    g.p[g.n] = 0; /* raw() keeps one byte spare */
    *text = g.p;
    *n = g.n;
    return MOE_OK;
}

moe_status corpus_generate(uint8_t **text, size_t *n, size_t target_bytes, uint64_t seed,
                           moe_error *err) {
    return generate(text, n, -1, target_bytes, seed, err);
}

moe_status corpus_generate_domain(uint8_t **text, size_t *n, int domain, size_t target_bytes,
                                  uint64_t seed, moe_error *err) {
    if (domain < 0 || domain >= CORPUS_N_DOMAINS) {
        if (text) *text = NULL;
        if (n) *n = 0;
        return moe_err(err, MOE_ERR_ARG, "corpus: domain %d is outside 0 .. %d", domain,
                       CORPUS_N_DOMAINS - 1);
    }
    /* a stream of its own per domain */
    return generate(text, n, domain, target_bytes,
                    seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(domain + 1)), err);
}
