"""The synthetic generator's vocabulary: lab items, ICD codes, drugs, note sentences and categorical values.

Plain data, kept apart from the generator's logic; codes are real ICD-9/ICD-10 codes so the features'
ICD roll-up sees a realistic mix.
"""

# itemid, label, fluid, category, unit, baseline, sd, decimals
LAB_ITEMS = [
    (50912, "Creatinine", "Blood", "Chemistry", "mg/dL", 1.1, 0.5, 1),
    (50983, "Sodium", "Blood", "Chemistry", "mEq/L", 139.0, 4.0, 0),
    (50971, "Potassium", "Blood", "Chemistry", "mEq/L", 4.2, 0.5, 1),
    (50902, "Chloride", "Blood", "Chemistry", "mEq/L", 102.0, 4.0, 0),
    (50882, "Bicarbonate", "Blood", "Chemistry", "mEq/L", 25.0, 3.5, 0),
    (50868, "Anion Gap", "Blood", "Chemistry", "mEq/L", 14.0, 3.0, 0),
    (51006, "Urea Nitrogen", "Blood", "Chemistry", "mg/dL", 20.0, 9.0, 0),
    (50931, "Glucose", "Blood", "Chemistry", "mg/dL", 120.0, 35.0, 0),
    (50960, "Magnesium", "Blood", "Chemistry", "mg/dL", 2.0, 0.3, 1),
    (50970, "Phosphate", "Blood", "Chemistry", "mg/dL", 3.5, 0.8, 1),
    (50893, "Calcium, Total", "Blood", "Chemistry", "mg/dL", 8.9, 0.6, 1),
    (50862, "Albumin", "Blood", "Chemistry", "g/dL", 3.6, 0.5, 1),
    (50885, "Bilirubin, Total", "Blood", "Chemistry", "mg/dL", 0.9, 0.5, 1),
    (50861, "Alanine Aminotransferase (ALT)", "Blood", "Chemistry", "IU/L", 30.0, 15.0, 0),
    (50878, "Asparate Aminotransferase (AST)", "Blood", "Chemistry", "IU/L", 35.0, 18.0, 0),
    (50863, "Alkaline Phosphatase", "Blood", "Chemistry", "IU/L", 90.0, 30.0, 0),
    (50813, "Lactate", "Blood", "Blood Gas", "mmol/L", 1.6, 0.8, 1),
    (50820, "pH", "Blood", "Blood Gas", "units", 7.39, 0.05, 2),
    (50821, "pO2", "Blood", "Blood Gas", "mm Hg", 90.0, 25.0, 0),
    (50818, "pCO2", "Blood", "Blood Gas", "mm Hg", 41.0, 6.0, 0),
    (51222, "Hemoglobin", "Blood", "Hematology", "g/dL", 11.5, 1.8, 1),
    (51221, "Hematocrit", "Blood", "Hematology", "%", 34.5, 5.0, 1),
    (51301, "White Blood Cells", "Blood", "Hematology", "K/uL", 9.0, 3.5, 1),
    (51265, "Platelet Count", "Blood", "Hematology", "K/uL", 230.0, 70.0, 0),
    (51279, "Red Blood Cells", "Blood", "Hematology", "m/uL", 3.9, 0.6, 2),
    (51250, "MCV", "Blood", "Hematology", "fL", 90.0, 6.0, 0),
    (51248, "MCH", "Blood", "Hematology", "pg", 30.0, 2.0, 1),
    (51277, "RDW", "Blood", "Hematology", "%", 14.5, 1.8, 1),
    (51237, "INR(PT)", "Blood", "Hematology", "", 1.2, 0.3, 1),
    (51275, "PTT", "Blood", "Hematology", "sec", 32.0, 6.0, 1),
]

DIAGNOSES = [  # (icd_version, icd_code)
    *[
        (10, c)
        for c in (
            "I10",
            "E119",
            "N179",
            "J189",
            "I4891",
            "E785",
            "I2510",
            "N183",
            "J449",
            "K219",
            "E039",
            "F329",
            "D649",
            "E871",
            "I509",
            "A419",
            "R6521",
            "J9601",
            "K7030",
            "N390",
            "E1122",
            "I480",
            "G4733",
            "Z794",
            "F17210",
            "E669",
            "M810",
            "C3490",
            "K5790",
            "I639",
            "Z8673",
            "R0902",
            "E872",
            "D62",
            "J690",
            "K922",
            "I129",
            "N186",
            "Z955",
            "E876",
        )
    ],
    *[
        (9, c)
        for c in (
            "4019",
            "25000",
            "5849",
            "486",
            "42731",
            "2724",
            "41401",
            "5859",
            "496",
            "53081",
            "2449",
            "311",
            "2859",
            "2761",
            "4280",
            "0389",
            "78552",
            "51881",
            "5715",
            "5990",
            "3051",
            "2768",
            "99592",
            "V5861",
            "4254",
        )
    ],
]
PROCEDURES = [
    (10, "02HV33Z"),
    (10, "0DJ08ZZ"),
    (10, "5A1955Z"),
    (10, "0BH17EZ"),
    (10, "3E0G76Z"),
    (10, "B2111ZZ"),
    (9, "3893"),
    (9, "9604"),
    (9, "9671"),
    (9, "3995"),
    (9, "4513"),
    (9, "8856"),
]
DRUGS = [
    "Heparin",
    "Sodium Chloride 0.9%  Flush",
    "Acetaminophen",
    "Insulin",
    "Furosemide",
    "Metoprolol Tartrate",
    "Potassium Chloride",
    "Docusate Sodium",
    "Senna",
    "Ondansetron",
    "Pantoprazole",
    "Aspirin",
    "Atorvastatin",
    "Magnesium Sulfate",
    "Vancomycin",
    "Piperacillin-Tazobactam",
    "Lorazepam",
    "Oxycodone (Immediate Release)",
    "Morphine Sulfate",
    "Lisinopril",
    "Amlodipine",
    "Warfarin",
    "Enoxaparin Sodium",
    "Ceftriaxone",
    "Levothyroxine Sodium",
    "Albuterol 0.083% Neb Soln",
    "Prednisone",
    "Norepinephrine",
    "Propofol",
    "Fentanyl Citrate",
    "Midazolam",
    "Lactulose",
    "Rifaximin",
    "Ciprofloxacin HCl",
    "Metronidazole",
    "Haloperidol",
    "Quetiapine Fumarate",
    "Gabapentin",
    "Tamsulosin",
    "Calcium Gluconate",
]
ROUTES = ["PO", "IV", "SC", "PO/NG", "IH", "IV DRIP"]

# One pair (positive, negative) of sentence pools per note-driving factor dimension, in the order of the
# notes modality's factor columns (global 0-1, codes+notes 0-1, notes 0).
NOTE_TOPICS = [
    (
        [
            "Patient in severe respiratory distress requiring escalating oxygen support.",
            "Bilateral diffuse airspace opacities concerning for ARDS.",
            "Worsening hypoxemia despite high flow nasal cannula.",
        ],
        [
            "Breathing comfortably on room air.",
            "Lungs are clear bilaterally without focal consolidation.",
            "No acute cardiopulmonary process.",
        ],
    ),
    (
        [
            "Hypotensive and started on vasopressors for septic shock.",
            "Lactate rising, concern for hypoperfusion.",
            "Mottled extremities with delayed capillary refill.",
        ],
        [
            "Hemodynamically stable throughout the stay.",
            "Blood pressure well controlled on home regimen.",
            "Warm and well perfused extremities.",
        ],
    ),
    (
        [
            "Acute on chronic kidney injury with rising creatinine.",
            "Oliguric, nephrology consulted for dialysis.",
            "Renal ultrasound shows echogenic kidneys.",
        ],
        [
            "Renal function at baseline.",
            "Good urine output without electrolyte derangement.",
            "No hydronephrosis on renal imaging.",
        ],
    ),
    (
        [
            "Known cirrhosis with ascites and hepatic encephalopathy.",
            "Paracentesis performed for tense ascites.",
            "Liver is nodular with splenomegaly.",
        ],
        [
            "Liver enzymes within normal limits.",
            "No hepatic abnormality identified.",
            "Alert and oriented without asterixis.",
        ],
    ),
    (
        [
            "Metastatic disease with multiple pulmonary nodules.",
            "Goals of care discussed with family, palliative care following.",
            "Mass lesion with surrounding edema.",
        ],
        [
            "No evidence of malignancy.",
            "Independent at baseline, lives with spouse.",
            "Ambulating independently with physical therapy.",
        ],
    ),
]
NOTE_FILLER = [
    "Vital signs reviewed.",
    "Medications reconciled.",
    "Seen and examined at bedside.",
    "Follow up with primary care provider.",
    "Comparison is made to prior study.",
    "Diet as tolerated.",
    "Labs reviewed and noted above.",
    "Patient counseled regarding plan.",
    "Technique: portable AP view.",
    "Discussed with attending.",
]

ADMISSION_TYPES = ["EW EMER.", "URGENT", "ELECTIVE", "OBSERVATION ADMIT", "DIRECT EMER.", "EU OBSERVATION"]
ADMISSION_LOCATIONS = [
    "EMERGENCY ROOM",
    "PHYSICIAN REFERRAL",
    "TRANSFER FROM HOSPITAL",
    "WALK-IN/SELF REFERRAL",
]
DISCHARGE_LOCATIONS = ["HOME", "HOME HEALTH CARE", "SKILLED NURSING FACILITY", "REHAB", "HOSPICE"]
INSURANCES = ["Medicare", "Medicaid", "Other"]
RACES = ["WHITE", "BLACK/AFRICAN AMERICAN", "HISPANIC/LATINO - PUERTO RICAN", "ASIAN", "OTHER", "UNKNOWN"]
