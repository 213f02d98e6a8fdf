/* corpus_prose.c: the English and German documents of the built-in corpus
 * (stories and news items) and their word lists; see corpus.h for what they
 * look like.
 * Not for: the other domains (code: corpus_code.c; arith and records:
 * corpus.c) or the corpus API. Pure functions of the text builder's random
 * stream; the word lists are constant. */
#include <stdint.h>
#include <string.h>

#include "corpus/corpus_gen.h"

/* ------------------------------------------------------------ shared lists
 * (people and places; records borrows the names, see corpus_gen.h) */

const char *const corpus_male[] = {
    "Tom", "Jack", "Peter", "Sam", "Henry", "Oliver", "Leo", "Max", "Daniel", "Arthur",
    "Hugo", "Felix", "Oscar", "Simon", "Martin", "Victor", "George", "Edward", "Lucas",
    "Adam", "Noah", "Ben", "Carl", "Frank", "Paul", "Ralph", "Walter", "Owen", "Isaac", "Theo"};
const char *const corpus_female[] = {
    "Anna", "Mary", "Lucy", "Emma", "Rose", "Alice", "Clara", "Grace", "Julia", "Nora",
    "Ella", "Sophie", "Lily", "Hannah", "Ruth", "Martha", "Ivy", "Olivia", "Maya", "Helen",
    "Laura", "Sarah", "Eva", "Iris", "Judith", "Vera", "Agnes", "Mia", "Chloe", "Beth"};
const char *const corpus_surname[] = {
    "Smith", "Miller", "Brown", "Taylor", "Clark", "Walker", "Wright", "Green", "Hall",
    "Wood", "Turner", "Baker", "Hill", "Moore", "Cooper", "Ward", "King", "Fischer", "Weber",
    "Becker", "Wagner", "Hoffmann", "Schulz", "Koch", "Richter", "Klein", "Wolf", "Neumann",
    "Martin", "Bernard", "Dubois", "Moreau", "Laurent", "Rossi", "Russo", "Costa", "Silva",
    "Santos", "Novak", "Horvat", "Kowalski", "Nowak", "Jensen", "Hansen", "Larsen", "Berg",
    "Lind", "Olsen", "Murphy", "Kelly"};
const char *const corpus_city[] = {
    "London", "Paris", "Berlin", "Madrid", "Rome", "Lisbon", "Dublin", "Vienna", "Prague",
    "Oslo", "Boston", "Chicago", "Denver", "Seattle", "Toronto", "Sydney", "Melbourne",
    "Auckland", "Cairo", "Nairobi", "Lagos", "Mumbai", "Tokyo", "Osaka", "Seoul", "Manila",
    "Lima", "Bogota", "Santiago", "Quito", "Havana", "Austin", "Dallas", "Phoenix",
    "Atlanta", "Leeds", "Bristol", "York", "Glasgow", "Cardiff", "Brighton", "Oxford",
    "Porto", "Seville", "Naples", "Milan", "Athens", "Warsaw", "Helsinki", "Bergen"};
const char *const corpus_job[] = {
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

const size_t corpus_n_male = NELEM(corpus_male), corpus_n_female = NELEM(corpus_female),
             corpus_n_surname = NELEM(corpus_surname), corpus_n_city = NELEM(corpus_city),
             corpus_n_job = NELEM(corpus_job);

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
    person c = {NULL, (int)below(g, 2), PICK(g, corpus_job)}, c2 = {NULL, (int)below(g, 2), PICK(g, corpus_job)};
    c.name = c.female ? PICK(g, corpus_female) : PICK(g, corpus_male);
    c2.name = c2.female ? PICK(g, corpus_female) : PICK(g, corpus_male);
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
    const char *city = PICK(g, corpus_city);
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
        case 3: word(g, pct(g, 50) ? PICK(g, corpus_male) : PICK(g, corpus_female)); word(g, PICK(g, corpus_surname)); punct(g, ",");
                word(g, "a"); num(g, (uint64_t)between(g, 21, 79)); punct(g, "-year-old"); word(g, PICK(g, corpus_job));
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
        case 7: word(g, "The mayor,"); word(g, pct(g, 50) ? PICK(g, corpus_male) : PICK(g, corpus_female)); word(g, PICK(g, corpus_surname));
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

const char *const corpus_de_male[] = {
    "Hans", "Karl", "Lukas", "Felix", "Paul", "Jonas", "Emil", "Otto", "Fritz", "Georg",
    "Peter", "Stefan", "Thomas", "Michael", "Jakob", "Anton", "Max", "Leon", "Moritz",
    "Franz", "Heinrich", "Ludwig", "Konrad", "Tobias", "Florian"};
const char *const corpus_de_female[] = {
    "Greta", "Anna", "Lena", "Marie", "Sophie", "Clara", "Emma", "Frieda", "Hanna", "Ida",
    "Lotte", "Paula", "Rosa", "Martha", "Helga", "Ursula", "Sabine", "Julia", "Katharina",
    "Elisabeth", "Johanna", "Luise", "Mia", "Leonie", "Nina"};
const size_t corpus_n_de_male = NELEM(corpus_de_male),
             corpus_n_de_female = NELEM(corpus_de_female);
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
    c.name = c.gd == M ? PICK(g, corpus_de_male) : PICK(g, corpus_de_female);
    c.job = c.gd == M ? PICK(g, DE_JOB_M) : PICK(g, DE_JOB_F);
    c2.gd = pct(g, 50) ? M : F;
    c2.name = c2.gd == M ? PICK(g, corpus_de_male) : PICK(g, corpus_de_female);
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
        case 3: word(g, fem ? PICK(g, corpus_de_female) : PICK(g, corpus_de_male)); word(g, PICK(g, corpus_surname)); punct(g, ",");
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
        case 7: word(g, fem ? "Die Bürgermeisterin" : "Der Bürgermeister"); word(g, fem ? PICK(g, corpus_de_female) : PICK(g, corpus_de_male));
                word(g, PICK(g, corpus_surname)); word(g, "sagte,"); de_np(g, 1, NOM, NULL, pb->g, pb->w);
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

/* ------------------------------------------------------------ entry points */

void corpus_english_doc(gen *g) {
    if (pct(g, 65)) en_story(g); else en_news(g);
}

void corpus_german_doc(gen *g) {
    if (pct(g, 65)) de_story(g); else de_news(g);
}
