#pragma once
// The MoE build wizard: base model, experts, layers, routing, training.
// Every page reads from and writes to one moe::Selector, so a selector opened
// from TOML fills every page and the pages save back to the same TOML.
// Finish emits buildRequested with the selection.
#include "moe/dataset.h"
#include "moe/model_config.h"
#include "moe/selector.h"

#include <QWizard>
#include <QWizardPage>

#include <optional>

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QPlainTextEdit;
class QPushButton;
class QSpinBox;
class QTableWidget;
class QTimer;

namespace moe::ui {

class ModelLibrary;

class BuildWizard : public QWizard {
    Q_OBJECT
public:
    enum PageId { BasePage = 0, ExpertsPage, LayersPage, RoutingPage, TrainingPage };

    explicit BuildWizard(ModelLibrary* library = nullptr, QWidget* parent = nullptr);

    // Fills every page from `s` (its file names the folder paths are relative to).
    void setSelector(const moe::Selector& s);
    // The selection as the pages show it now.
    moe::Selector selector() const;
    // Loads a TOML selector into the pages; false with the message in `error`.
    bool openSelector(const QString& path, QString* error = nullptr);
    // Writes the pages' selection as TOML (atomically); false with the message in `error`.
    bool saveSelector(const QString& path, QString* error = nullptr);

    // Pages' widgets, for tests and screenshots.
    QLineEdit* basePathEdit() const { return basePath_; }
    QLabel* baseFacts() const { return baseFacts_; }
    QTableWidget* expertsTable() const { return experts_; }
    QLabel* expertsMessage() const { return expertsMessage_; }
    QCheckBox* includeBaseBox() const { return includeBase_; }
    QVector<QCheckBox*> layerBoxes() const { return layerBoxes_; }
    QLabel* memoryLabel() const { return memory_; }
    QComboBox* gateModeBox() const { return gateMode_; }
    QComboBox* routingBox() const { return routing_; }
    // Selector::quantize: the base and fine-tuned experts quantized on load (data: the scheme as an int).
    QComboBox* quantizeBox() const { return quantize_; }
    QLineEdit* datasetPathEdit() const { return datasetPath_; }
    QTableWidget* datasetTable() const { return dataset_; }
    QLabel* datasetMessage() const { return datasetMessage_; }
    QSpinBox* topKBox() const { return topK_; }
    QDoubleSpinBox* validationSplitBox() const { return validationSplit_; }
    QDoubleSpinBox* lrBox() const { return lr_; }
    QSpinBox* epochsBox() const { return epochs_; }
    QSpinBox* batchBox() const { return batch_; }
    QSpinBox* seedBox() const { return seed_; }
    QLabel* summaryLabel() const { return summary_; }

    // Expert rows (a folder or a .gguf file): adding checks compatibility with the base; a type other
    // than the rows' is refused with the reason (false, message shown).
    bool addExpert(const QString& folder);
    void moveExpert(int row, int delta);
    void removeExpert(int row);
    // Quick layer selections: "all", "none", "first_half", "last_half", "every_other".
    void selectLayers(const QString& which);
    void selectLayerRange(int first, int last);
    bool loadDatasetFile(const QString& path);
    bool saveDatasetFile(const QString& path, QString* error = nullptr);

signals:
    void buildRequested(const moe::Selector& selector);

protected:
    void done(int result) override;

private:
    QWizardPage* makeBasePage();
    QWizardPage* makeExpertsPage();
    QWizardPage* makeLayersPage();
    QWizardPage* makeRoutingPage();
    QWizardPage* makeTrainingPage();
    void setBase(const QString& folder);
    void recheckExperts();
    void rebuildLayerBoxes();
    void updateMemory();
    void updateRoutingVisibility();
    void updateSummary();
    void storePromptsOfCurrentExpert();
    void showPromptsOfExpert(int index);
    std::vector<moe::DatasetRow> datasetRows() const;
    void setDatasetRows(const std::vector<moe::DatasetRow>& rows);

    ModelLibrary* library_;
    std::optional<moe::ModelConfig> base_;
    moe::Selector extra_; // keys the pages do not show, kept for a faithful save

    QLineEdit* basePath_;
    QComboBox* baseLibrary_;
    QLabel* baseFacts_;
    QTableWidget* experts_;
    QLabel* expertsMessage_;
    QCheckBox* includeBase_;
    QWidget* layerGrid_;
    QVector<QCheckBox*> layerBoxes_;
    QSpinBox* rangeFirst_;
    QSpinBox* rangeLast_;
    QLabel* memory_;
    QComboBox* gateMode_;
    QComboBox* routing_;
    QComboBox* quantize_;
    QWidget* datasetBox_;
    QLineEdit* datasetPath_;
    QTableWidget* dataset_;
    QLabel* datasetMessage_;
    QWidget* promptsBox_;
    QComboBox* promptsExpert_;
    QPlainTextEdit* positive_;
    QPlainTextEdit* negative_;
    std::vector<moe::ExpertPrompts> prompts_; // per expert row, then the base (index = rows)
    int promptsShown_ = -1;
    QSpinBox* topK_;
    QDoubleSpinBox* validationSplit_;
    QDoubleSpinBox* lr_;
    QSpinBox* epochs_;
    QSpinBox* batch_;
    QSpinBox* seed_;
    QLabel* summary_;
    QTimer* memoryTimer_; // one header scan after a burst of layer toggles
};

} // namespace moe::ui
